"""Small image classifiers for faithmap's built-in models.

All take ``(N, 3, H, W)`` images in ``[0, 1]`` and normalise them internally. The two
convolutional networks (``H, W >= 32``) end with global average pooling and one linear layer, so
class activation maps can be read from their last convolutional block, exposed as the attribute
``features``. The vision transformer lives in :mod:`faithmap.zoo.vit`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "SmallCNN", "SmallResNet", "normalise"]

# Inputs in [0, 1] are mapped to roughly [-2, 2]: (x - 0.5) / 0.25.
_INPUT_MEAN = 0.5
_INPUT_STD = 0.25


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Map images in ``[0, 1]`` to roughly ``[-2, 2]``: ``(x - 0.5) / 0.25``."""
    return (x - _INPUT_MEAN) / _INPUT_STD


def _conv_block(in_channels: int, out_channels: int, *, pool: bool) -> nn.Sequential:
    block = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )
    if pool:
        block.append(nn.MaxPool2d(2))
    return block


class SmallCNN(nn.Module):
    """A plain three-block convolutional network (about 24k parameters).

    Each block is a 3x3 convolution, batch normalisation and ReLU; the first two blocks end
    with 2x2 max pooling. Channels are 16, 32 and 64. A 64 x 64 input gives a 16 x 16 map in
    ``features``.

    Parameters
    ----------
    num_classes : int, default=6
        Number of output logits.

    Attributes
    ----------
    block1, block2 : nn.Sequential
        Convolution, batch normalisation, ReLU and max pooling.
    features : nn.Sequential
        The last convolutional block (convolution, batch normalisation and ReLU): the layer
        for CAM methods.
    head : nn.Linear
        Linear classifier applied after global average pooling over ``features``.
    """

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.block1 = _conv_block(3, 16, pool=True)
        self.block2 = _conv_block(16, 32, pool=True)
        self.features = _conv_block(32, 64, pool=False)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, num_classes)`` logits of ``(N, 3, H, W)`` images in ``[0, 1]``."""
        x = self.features(self.block2(self.block1(normalise(x))))
        logits: torch.Tensor = self.head(x.mean(dim=(2, 3)))
        return logits


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch normalisation and an identity or projected shortcut.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and output.
    stride : int, default=1
        Stride of the first convolution; a shortcut projection (1x1 convolution and batch
        normalisation) is used when it is not 1 or the channel count changes.

    References
    ----------
    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        # Distinct ReLU modules, never reused: hook-based methods (guided backpropagation,
        # DeepLIFT, LRP) need one module per non-linearity.
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        result: torch.Tensor = self.relu2(out)
        return result


class SmallResNet(nn.Module):
    """A small residual network (about 78k parameters).

    A 3x3 stem convolution (16 channels) with batch normalisation and ReLU, then three stages of
    one :class:`BasicBlock` each, with 16, 32 and 64 channels and strides 1, 2 and 2. A 64 x 64
    input gives a 16 x 16 map in ``features``.

    Parameters
    ----------
    num_classes : int, default=6
        Number of output logits.

    Attributes
    ----------
    stem : nn.Sequential
        Convolution, batch normalisation and ReLU.
    layer1, layer2 : BasicBlock
        The first two stages.
    features : BasicBlock
        The third stage, the last convolutional block: the layer for CAM methods.
    head : nn.Linear
        Linear classifier applied after global average pooling over ``features``.

    References
    ----------
    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, stride=2)
        self.features = BasicBlock(32, 64, stride=2)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, num_classes)`` logits of ``(N, 3, H, W)`` images in ``[0, 1]``."""
        x = self.layer2(self.layer1(self.stem(normalise(x))))
        logits: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits
