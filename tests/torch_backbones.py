"""Independent torch.nn references for the backbones that have no
transformers twin, written from the published architectures with the
module names (hence state-dict keys) of the libraries whose weights
scenejax loads: torchvision's VGG, DenseNet, ShuffleNetV2 and
MobileNetV3-Large, and timm's VGG and MobileNetV3 (timm and torchvision
cannot be installed beside the CPU build of torch here).

Each follows its library's forward, not scenejax's: torchvision's VGG
flattens and uses Linear layers where timm and scenejax use a 7x7 conv;
timm's MobileNetV3 pools before its 1x1 head conv; torchvision's
ShuffleNetV2 shuffles with view/transpose in NCHW.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
  """Non-trivial BatchNorm statistics and affine parameters, eval mode."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
  return model.eval()


def state_dict_numpy(model: nn.Module) -> dict:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------- VGG


def _vgg_features(config, batch_norm):
  layers, in_ch = [], 3
  for block in config:
    for width in block:
      layers.append(nn.Conv2d(in_ch, width, 3, padding=1))
      if batch_norm:
        layers.append(nn.BatchNorm2d(width))
      layers.append(nn.ReLU())
      in_ch = width
    layers.append(nn.MaxPool2d(2, 2))
  return nn.Sequential(*layers)


class TorchvisionVGG(nn.Module):
  """torchvision.models.VGG: features, AdaptiveAvgPool2d(7), flatten,
  classifier.0/3/6 Linear layers."""

  def __init__(self, config, batch_norm, fc_width=4096, num_classes=1000):
    super().__init__()
    self.features = _vgg_features(config, batch_norm)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    last = config[-1][-1]
    self.classifier = nn.Sequential(
      nn.Linear(last * 49, fc_width),
      nn.ReLU(),
      nn.Dropout(),
      nn.Linear(fc_width, fc_width),
      nn.ReLU(),
      nn.Dropout(),
      nn.Linear(fc_width, num_classes),
    )

  def forward(self, x):
    x = torch.flatten(self.avgpool(self.features(x)), 1)
    return self.classifier(x)


class _ConvMlp(nn.Module):
  def __init__(self, in_ch, width):
    super().__init__()
    self.fc1 = nn.Conv2d(in_ch, width, 7)
    self.fc2 = nn.Conv2d(width, width, 1)

  def forward(self, x):
    if x.shape[-2] < 7 or x.shape[-1] < 7:
      x = F.adaptive_avg_pool2d(x, (max(7, x.shape[-2]), max(7, x.shape[-1])))
    return F.relu(self.fc2(F.relu(self.fc1(x))))


class _Head(nn.Module):
  def __init__(self, width, num_classes):
    super().__init__()
    self.fc = nn.Linear(width, num_classes)

  def forward(self, x):
    return self.fc(x.mean((2, 3)))


class TimmVGG(nn.Module):
  """timm.models.vgg.VGG: features, pre_logits (ConvMlp), head.fc."""

  def __init__(self, config, batch_norm, fc_width=4096, num_classes=1000):
    super().__init__()
    self.features = _vgg_features(config, batch_norm)
    self.pre_logits = _ConvMlp(config[-1][-1], fc_width)
    self.head = _Head(fc_width, num_classes)

  def forward(self, x):
    return self.head(self.pre_logits(self.features(x)))


# ------------------------------------------------------------ DenseNet


class _DenseLayer(nn.Module):
  def __init__(self, in_ch, growth):
    super().__init__()
    self.norm1 = nn.BatchNorm2d(in_ch)
    self.relu1 = nn.ReLU()
    self.conv1 = nn.Conv2d(in_ch, 4 * growth, 1, bias=False)
    self.norm2 = nn.BatchNorm2d(4 * growth)
    self.relu2 = nn.ReLU()
    self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

  def forward(self, x):
    y = self.conv1(self.relu1(self.norm1(x)))
    return torch.cat([x, self.conv2(self.relu2(self.norm2(y)))], 1)


class TorchvisionDenseNet(nn.Module):
  """torchvision.models.DenseNet (timm's densenet121 has the same names)."""

  def __init__(self, growth=32, blocks=(6, 12, 24, 16), init=64, classes=1000):
    super().__init__()
    feats = [
      ("conv0", nn.Conv2d(3, init, 7, 2, 3, bias=False)),
      ("norm0", nn.BatchNorm2d(init)),
      ("relu0", nn.ReLU()),
      ("pool0", nn.MaxPool2d(3, 2, 1)),
    ]
    ch = init
    for i, n in enumerate(blocks):
      block = nn.Sequential()
      for j in range(n):
        block.add_module(
          f"denselayer{j + 1}", _DenseLayer(ch + j * growth, growth)
        )
      feats.append((f"denseblock{i + 1}", block))
      ch += n * growth
      if i < len(blocks) - 1:
        trans = nn.Sequential()
        trans.add_module("norm", nn.BatchNorm2d(ch))
        trans.add_module("relu", nn.ReLU())
        trans.add_module("conv", nn.Conv2d(ch, ch // 2, 1, bias=False))
        trans.add_module("pool", nn.AvgPool2d(2, 2))
        feats.append((f"transition{i + 1}", trans))
        ch //= 2
    feats.append(("norm5", nn.BatchNorm2d(ch)))
    self.features = nn.Sequential()
    for name, module in feats:
      self.features.add_module(name, module)
    self.classifier = nn.Linear(ch, classes)

  def forward(self, x):
    x = F.relu(self.features(x))
    return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# -------------------------------------------------------- ShuffleNetV2


def _channel_shuffle(x, groups):
  b, c, h, w = x.size()
  x = x.view(b, groups, c // groups, h, w)
  return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


class _ShuffleUnit(nn.Module):
  def __init__(self, inp, oup, stride):
    super().__init__()
    self.stride = stride
    half = oup // 2
    if stride > 1:
      self.branch1 = nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, bias=False, groups=inp),
        nn.BatchNorm2d(inp),
        nn.Conv2d(inp, half, 1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(),
      )
    else:
      self.branch1 = nn.Sequential()
    self.branch2 = nn.Sequential(
      nn.Conv2d(inp if stride > 1 else half, half, 1, bias=False),
      nn.BatchNorm2d(half),
      nn.ReLU(),
      nn.Conv2d(half, half, 3, stride, 1, bias=False, groups=half),
      nn.BatchNorm2d(half),
      nn.Conv2d(half, half, 1, bias=False),
      nn.BatchNorm2d(half),
      nn.ReLU(),
    )

  def forward(self, x):
    if self.stride == 1:
      x1, x2 = x.chunk(2, dim=1)
      out = torch.cat((x1, self.branch2(x2)), dim=1)
    else:
      out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
    return _channel_shuffle(out, 2)


class TorchvisionShuffleNetV2(nn.Module):
  def __init__(self, widths=(24, 116, 232, 464, 1024), classes=1000):
    super().__init__()
    self.conv1 = nn.Sequential(
      nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
      nn.BatchNorm2d(widths[0]),
      nn.ReLU(),
    )
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    ch = widths[0]
    for name, repeats, out in zip(
      ("stage2", "stage3", "stage4"), (4, 8, 4), widths[1:4]
    ):
      units = [_ShuffleUnit(ch, out, 2)] + [
        _ShuffleUnit(out, out, 1) for _ in range(repeats - 1)
      ]
      setattr(self, name, nn.Sequential(*units))
      ch = out
    self.conv5 = nn.Sequential(
      nn.Conv2d(ch, widths[4], 1, bias=False),
      nn.BatchNorm2d(widths[4]),
      nn.ReLU(),
    )
    self.fc = nn.Linear(widths[4], classes)

  def forward(self, x):
    x = self.maxpool(self.conv1(x))
    x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
    return self.fc(x.mean([2, 3]))


# --------------------------------------------------------- MobileNetV3

# in, kernel, expanded, out, SE, hard-swish, stride (torchvision's table)
MOBILENETV3_LARGE = [
  (16, 3, 16, 16, False, False, 1),
  (16, 3, 64, 24, False, False, 2),
  (24, 3, 72, 24, False, False, 1),
  (24, 5, 72, 40, True, False, 2),
  (40, 5, 120, 40, True, False, 1),
  (40, 5, 120, 40, True, False, 1),
  (40, 3, 240, 80, False, True, 2),
  (80, 3, 200, 80, False, True, 1),
  (80, 3, 184, 80, False, True, 1),
  (80, 3, 184, 80, False, True, 1),
  (80, 3, 480, 112, True, True, 1),
  (112, 3, 672, 112, True, True, 1),
  (112, 5, 672, 160, True, True, 2),
  (160, 5, 960, 160, True, True, 1),
  (160, 5, 960, 160, True, True, 1),
]


def _divisible(v, d=8):
  new = max(d, int(v + d / 2) // d * d)
  return new + d if new < 0.9 * v else new


def _conv_norm_act(i, o, k, stride=1, groups=1, act=None, eps=1e-3):
  layers = [
    nn.Conv2d(i, o, k, stride, (k - 1) // 2, groups=groups, bias=False),
    nn.BatchNorm2d(o, eps=eps),
  ]
  if act is not None:
    layers.append(act())
  return nn.Sequential(*layers)


class _TorchvisionSE(nn.Module):
  def __init__(self, ch, squeeze):
    super().__init__()
    self.fc1 = nn.Conv2d(ch, squeeze, 1)
    self.fc2 = nn.Conv2d(squeeze, ch, 1)

  def forward(self, x):
    s = F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))
    return F.hardsigmoid(self.fc2(s)) * x


class _TorchvisionIR(nn.Module):
  def __init__(self, inp, k, exp, out, se, hs, stride):
    super().__init__()
    act = nn.Hardswish if hs else nn.ReLU
    layers = []
    if exp != inp:
      layers.append(_conv_norm_act(inp, exp, 1, act=act))
    layers.append(_conv_norm_act(exp, exp, k, stride, groups=exp, act=act))
    if se:
      layers.append(_TorchvisionSE(exp, _divisible(exp // 4)))
    layers.append(_conv_norm_act(exp, out, 1))
    self.block = nn.Sequential(*layers)
    self.residual = stride == 1 and inp == out

  def forward(self, x):
    y = self.block(x)
    return x + y if self.residual else y


class TorchvisionMobileNetV3(nn.Module):
  """torchvision.models.mobilenet_v3_large: features.0..16, classifier."""

  def __init__(self, classes=1000):
    super().__init__()
    layers = [_conv_norm_act(3, 16, 3, 2, act=nn.Hardswish)]
    layers += [_TorchvisionIR(*row) for row in MOBILENETV3_LARGE]
    layers.append(_conv_norm_act(160, 960, 1, act=nn.Hardswish))
    self.features = nn.Sequential(*layers)
    self.classifier = nn.Sequential(
      nn.Linear(960, 1280),
      nn.Hardswish(),
      nn.Dropout(0.2),
      nn.Linear(1280, classes),
    )

  def forward(self, x):
    return self.classifier(
      F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
    )


class _TimmSE(nn.Module):
  def __init__(self, ch, squeeze):
    super().__init__()
    self.conv_reduce = nn.Conv2d(ch, squeeze, 1)
    self.conv_expand = nn.Conv2d(squeeze, ch, 1)

  def forward(self, x):
    s = F.relu(self.conv_reduce(x.mean((2, 3), keepdim=True)))
    return x * F.hardsigmoid(self.conv_expand(s))


class _TimmBlock(nn.Module):
  """timm's DepthwiseSeparableConv (no expansion) or InvertedResidual."""

  def __init__(self, inp, k, exp, out, se, hs, stride, eps):
    super().__init__()
    self.act = nn.Hardswish() if hs else nn.ReLU()
    self.separable = exp == inp
    conv = lambda i, o, k, s=1, g=1: nn.Conv2d(
      i, o, k, s, (k - 1) // 2, groups=g, bias=False
    )
    if self.separable:
      self.conv_dw = conv(inp, inp, k, stride, inp)
      self.bn1 = nn.BatchNorm2d(inp, eps=eps)
      self.se = _TimmSE(exp, _divisible(exp / 4)) if se else None
      self.conv_pw = conv(inp, out, 1)
      self.bn2 = nn.BatchNorm2d(out, eps=eps)
    else:
      self.conv_pw = conv(inp, exp, 1)
      self.bn1 = nn.BatchNorm2d(exp, eps=eps)
      self.conv_dw = conv(exp, exp, k, stride, exp)
      self.bn2 = nn.BatchNorm2d(exp, eps=eps)
      self.se = _TimmSE(exp, _divisible(exp / 4)) if se else None
      self.conv_pwl = conv(exp, out, 1)
      self.bn3 = nn.BatchNorm2d(out, eps=eps)
    self.residual = stride == 1 and inp == out

  def forward(self, x):
    if self.separable:
      y = self.act(self.bn1(self.conv_dw(x)))
      y = y if self.se is None else self.se(y)
      y = self.bn2(self.conv_pw(y))
    else:
      y = self.act(self.bn1(self.conv_pw(x)))
      y = self.act(self.bn2(self.conv_dw(y)))
      y = y if self.se is None else self.se(y)
      y = self.bn3(self.conv_pwl(y))
    return x + y if self.residual else y


class _TimmConvBnAct(nn.Module):
  def __init__(self, inp, out, eps):
    super().__init__()
    self.conv = nn.Conv2d(inp, out, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(out, eps=eps)

  def forward(self, x):
    return F.hardswish(self.bn1(self.conv(x)))


class TimmMobileNetV3(nn.Module):
  """timm's mobilenetv3_large_100: conv_stem, bn1, blocks.S.J (stages of
  1, 2, 3, 4, 2, 3 blocks and the 960-channel ConvBnAct), global pool,
  conv_head (1x1, bias), hard-swish, classifier; BatchNorm eps 1e-5."""

  def __init__(self, classes=1000, eps=1e-5):
    super().__init__()
    self.conv_stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(16, eps=eps)
    rows, stages = iter(MOBILENETV3_LARGE), []
    for size in (1, 2, 3, 4, 2, 3):
      stages.append(
        nn.Sequential(*[_TimmBlock(*next(rows), eps) for _ in range(size)])
      )
    stages.append(nn.Sequential(_TimmConvBnAct(160, 960, eps)))
    self.blocks = nn.Sequential(*stages)
    self.conv_head = nn.Conv2d(960, 1280, 1)
    self.classifier = nn.Linear(1280, classes)

  def forward(self, x):
    x = self.blocks(F.hardswish(self.bn1(self.conv_stem(x))))
    x = F.hardswish(self.conv_head(x.mean((2, 3), keepdim=True)))
    return self.classifier(x.flatten(1))
