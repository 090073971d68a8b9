"""The tutorial's convolutional network for 28x28 grayscale images, as a plain ``nn.Module``.

Training logic lives in :mod:`fmnist.module`; this file only says what the network computes.
"""

from torch import Tensor, nn

from fmnist.idx import CLASS_NAMES, IMAGE_SIDE


class FashionCNN(nn.Module):
    """Two (or three) conv/pool blocks and two linear layers; the defaults are the tutorial's network.

    ``conv1`` (1->32, 3x3) -> ReLU -> max-pool 2 -> ``conv2`` (32->64, 3x3) -> ReLU -> max-pool 2 ->
    ``fc1`` (64*5*5 -> 128) -> ReLU -> dropout -> ``fc2`` (128 -> 10). With ``batch_norm`` each
    convolution is followed by batch normalisation (``bn1``, ``bn2``) before its ReLU, and has no bias
    (the normalisation's shift replaces it). ``padding=1`` keeps each convolution's output the size of
    its input, and ``conv3_channels`` adds a third conv/pool block (``conv3``, ``bn3``), so a network
    can be deeper yet cheaper: with both, 28 -> 14 -> 7 -> 3 pixels, and the third convolution works
    on 7x7 maps.

    Args:
        conv1_channels: output channels of the first convolution.
        conv2_channels: output channels of the second convolution.
        hidden_size: width of ``fc1``, the penultimate layer whose output the projector shows.
        dropout: dropout probability after ``fc1``; ``0`` (the tutorial) leaves it out in effect.
        num_classes: number of output logits; Fashion-MNIST's ten classes by default.
        batch_norm: batch normalisation after each convolution; off in the tutorial.
        padding: zero-padding of each 3x3 convolution: ``0`` (the tutorial) shrinks its maps by 2
            pixels, ``1`` keeps their size.
        conv3_channels: output channels of a third convolution, after the second pooling and
            followed by its own; ``0`` (the tutorial): none.

    Example::

        >>> import torch
        >>> FashionCNN()(torch.zeros(8, 1, 28, 28)).shape
        torch.Size([8, 10])
        >>> FashionCNN().feature_side, FashionCNN(padding=1, conv3_channels=128).feature_side
        (5, 3)
    """

    def __init__(
        self,
        conv1_channels: int = 32,
        conv2_channels: int = 64,
        hidden_size: int = 128,
        dropout: float = 0.0,
        num_classes: int = len(CLASS_NAMES),
        batch_norm: bool = False,
        padding: int = 0,
        conv3_channels: int = 0,
    ) -> None:
        super().__init__()
        # without the options the layers are created in the tutorial's order, so a seed gives its weights
        self.conv1 = nn.Conv2d(1, conv1_channels, kernel_size=3, padding=padding, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(conv1_channels) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size=3, padding=padding, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(conv2_channels) if batch_norm else nn.Identity()
        channels, blocks = conv2_channels, 2
        if conv3_channels:
            self.conv3 = nn.Conv2d(conv2_channels, conv3_channels, kernel_size=3, padding=padding, bias=not batch_norm)
            self.bn3 = nn.BatchNorm2d(conv3_channels) if batch_norm else nn.Identity()
            channels, blocks = conv3_channels, 3
        self.pool = nn.MaxPool2d(2, 2)
        # each block: the 3x3 convolution takes 2 - 2 * padding pixels off the side, the pooling halves it
        # (the tutorial's 28 -> 26 -> 13 -> 11 -> 5)
        self.feature_side = IMAGE_SIDE
        for _ in range(blocks):
            self.feature_side = (self.feature_side - 2 + 2 * padding) // 2
        self.fc1 = nn.Linear(channels * self.feature_side**2, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_size, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        if hasattr(self, "conv3"):
            x = self.pool(self.relu(self.bn3(self.conv3(x))))
        # flatten, not view: with channels_last memory the features are not contiguous in NCHW order
        x = x.flatten(1)
        x = self.dropout(self.relu(self.fc1(x)))
        return self.fc2(x)
