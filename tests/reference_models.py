"""Small reference CNNs written the way other people write them (no torchvision here): MobileNetV2, MobileNetV3
with hand-written h-swish / h-sigmoid and a Linear squeeze-excite, ShuffleNet v1 with a view/transpose channel
shuffle, and MnasNet-style blocks. Used to check that arbitrary models decompose into the LUT ops we expect."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(v: float, d: int = 8) -> int:
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


# ---- MobileNetV2 ----------------------------------------------------------------------------------------------
class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidualV2(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, k=1))
        layers += [ConvBNReLU6(hidden, hidden, s=stride, groups=hidden), nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
                   nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                [6, 320, 1, 1]]

    def __init__(self, width_mult: float = 0.25, num_classes: int = 10):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, cin, s=2)]
        for t, c, n, s in self.SETTINGS:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidualV2(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU6(cin, self.last_channel, k=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---- MobileNetV3 (small) --------------------------------------------------------------------------------------
class HSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


class SEModule(nn.Module):
    def __init__(self, channel: int, reduction: int = 4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), HSigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class Bneck(nn.Module):
    def __init__(self, inp: int, exp: int, oup: int, k: int, s: int, se: bool, nl: str):
        super().__init__()
        act = HSwish if nl == "HS" else nn.ReLU
        self.use_res = s == 1 and inp == oup
        layers: list[nn.Module] = []
        if exp != inp:
            layers += [nn.Conv2d(inp, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, s, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
        if se:
            layers.append(SEModule(exp))
        layers += [nn.Conv2d(exp, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_res else out


class MobileNetV3Small(nn.Module):
    CFG = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
           (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
           (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
           (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), HSwish())
        blocks, cin = [], 16
        for k, exp, out, se, nl, s in self.CFG:
            blocks.append(Bneck(cin, exp, out, k, s, se, nl))
            cin = out
        self.blocks = nn.Sequential(*blocks)
        self.last = nn.Sequential(nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), HSwish())
        self.classifier = nn.Sequential(nn.Linear(576, 1024), HSwish(), nn.Dropout(0.2), nn.Linear(1024, num_classes))

    def forward(self, x):
        x = self.last(self.blocks(self.stem(x)))
        x = x.mean((2, 3))
        return self.classifier(x)


# ---- ShuffleNet v1 --------------------------------------------------------------------------------------------
def channel_shuffle(x, groups: int):
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, stride: int, first_group: bool = True):
        super().__init__()
        self.stride, self.groups = stride, groups
        mid = cout // 4
        if stride == 2:
            cout -= cin  # the shortcut branch is concatenated
        g1 = groups if first_group else 1
        self.g_conv1 = nn.Sequential(nn.Conv2d(cin, mid, 1, groups=g1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.g_conv2 = nn.Sequential(nn.Conv2d(mid, cout, 1, groups=groups, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        residual = x
        out = self.g_conv2(self.dw(channel_shuffle(self.g_conv1(x), self.groups)))
        if self.stride == 2:
            out = torch.cat((F.avg_pool2d(residual, 3, 2, 1), out), 1)
        else:
            out = residual + out
        return F.relu(out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, stage_out=(120, 240, 480), repeats=(4, 8, 4), num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, cin = [], 24
        for si, (cout, n) in enumerate(zip(stage_out, repeats)):
            for i in range(n):
                units.append(ShuffleUnit(cin, cout, groups, 2 if i == 0 else 1, first_group=not (si == 0 and i == 0)))
                cin = cout
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.units(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# ---- MnasNet-style blocks (ReLU, no SE: the FBNet block structure, written independently) ------------------------
class MnasBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, s: int, e: int):
        super().__init__()
        mid = cin * e
        self.apply_residual = cin == cout and s == 1
        self.layers = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.layers(x) + x if self.apply_residual else self.layers(x)


class TinyMnasNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(MnasBlock(16, 24, 3, 2, 3), MnasBlock(24, 24, 3, 1, 3), MnasBlock(24, 40, 5, 2, 6))
        self.head = nn.Sequential(nn.Conv2d(40, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.head(self.blocks(self.stem(x)))).flatten(1))
