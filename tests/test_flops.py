import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nvcodec.errors import UsageError
from nvcodec.tasks.adapter import MicroAdapter
from nvcodec.tasks.flops import conv_flops, conv_output_size, count_flops, gflops, linear_flops, matmul_flops


@pytest.mark.parametrize(
    "cin,cout,k,stride,pad,groups,hw",
    [
        (3, 8, 3, 1, 1, 1, (16, 20)),
        (16, 32, 1, 1, 0, 1, (9, 7)),
        (8, 8, 3, 2, 1, 8, (15, 15)),
        (3, 64, 7, 2, 3, 1, (32, 32)),
    ],
)
def test_conv_count_matches_analytic(cin, cout, k, stride, pad, groups, hw):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, groups=groups)
    x = torch.randn(2, cin, *hw)
    with torch.no_grad():
        y, flops = count_flops(conv, x)
    out = conv_output_size(hw, k, stride, pad)
    assert tuple(y.shape[-2:]) == out
    assert flops == conv_flops(2, cin, cout, out, k, groups)


def test_one_by_one_conv_formula():
    assert conv_flops(4, 16, 32, (10, 12), 1) == 2 * 16 * 32 * 10 * 12 * 4
    adapter = MicroAdapter(16, 32, (10, 12))
    with torch.no_grad():
        _, flops = count_flops(adapter, torch.randn(4, 16, 5, 6))
    assert flops == 2 * 16 * 32 * 10 * 12 * 4  # the bilinear resize is not counted


class TinyResNet(nn.Module):
    """Stem, one basic block with a projection shortcut, global pool, linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn0(self.stem(x))))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(y + self.down(x))
        return self.fc(x.mean(dim=(2, 3)))


def test_tiny_resnet_equals_sum_of_analytic_counts():
    net = TinyResNet().eval()
    n, hw = 3, (64, 48)
    with torch.no_grad():
        out, flops = count_flops(net, torch.randn(n, 3, *hw))
    assert out.shape == (n, 10)
    s = conv_output_size(hw, 7, 2, 3)
    p = conv_output_size(s, 3, 2, 1)
    b = conv_output_size(p, 3, 2, 1)
    expected = (
        conv_flops(n, 3, 8, s, 7)
        + conv_flops(n, 8, 16, b, 3)
        + conv_flops(n, 16, 16, b, 3)
        + conv_flops(n, 8, 16, conv_output_size(p, 1, 2, 0), 1)
        + linear_flops(n, 16, 10)
    )
    assert flops == expected


def test_count_flops_passes_kwargs_and_counts_matmul():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    res, flops = count_flops(torch.matmul, a, other=b)
    torch.testing.assert_close(res, a @ b)
    assert flops == matmul_flops(5, 7, 3)


def test_uncounted_ops_are_zero():
    x = torch.randn(2, 4, 8, 8)

    def elementwise(t):
        t = F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)
        return F.relu(t * 2 + 1).mean()

    _, flops = count_flops(elementwise, x)
    assert flops == 0


def test_helpers():
    assert gflops(3_500_000_000) == pytest.approx(3.5)
    assert linear_flops(2, 3, 4) == 48
    assert conv_output_size(224, 7, 2, 3) == (112, 112)
    with pytest.raises(UsageError):
        conv_output_size(2, 5)
    with pytest.raises(UsageError):
        conv_flops(1, 6, 4, 3, 1, groups=4)
