"""The tutorial's own training loop, the baseline of ``python -m benchmarks.bench`` (``make benchmark``).

Written out as the tutorial publishes it: torchvision's dataset with per-image PIL transforms,
a plain PyTorch loop, and ``SummaryWriter`` logging scalars, ``add_scalars``, an image grid and
histograms every epoch. Only the timing around each epoch is added.
"""

import gzip
import shutil
import time
from pathlib import Path

import torch


def run_tutorial(epochs: int, workdir: Path, data_dir: str = "./data") -> dict:
    """The tutorial's loop as published: torchvision dataset and transforms, SummaryWriter logging."""
    import torchvision
    import torchvision.transforms as transforms
    from torch.utils.tensorboard import SummaryWriter

    from fmnist import idx
    from fmnist.data import FashionMNISTDataModule
    from fmnist.model import FashionCNN

    FashionMNISTDataModule(data_dir).prepare_data()  # the same files as fit, or fit's error message
    raw = workdir / "FashionMNIST" / "raw"  # torchvision reads uncompressed files in this layout
    raw.mkdir(parents=True, exist_ok=True)
    for split in idx.locate(Path(data_dir)).values():
        for path in (split.images, split.labels):
            with (
                (gzip.open if path.suffix == ".gz" else open)(path, "rb") as src,
                open(raw / path.name.removesuffix(".gz"), "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    trainset = torchvision.datasets.FashionMNIST(root=str(workdir), train=True, download=False, transform=transform)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=64, shuffle=True)
    testset = torchvision.datasets.FashionMNIST(root=str(workdir), train=False, download=False, transform=transform)
    testloader = torch.utils.data.DataLoader(testset, batch_size=64, shuffle=False)
    torch.manual_seed(42)
    model = FashionCNN().to(device)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    writer = SummaryWriter(log_dir=str(workdir / "runs/fashion_mnist_lr_0.001_bs_64"))
    writer.add_graph(model, next(iter(trainloader))[0].to(device))
    seconds, cpu, val_acc = [], [], 0.0
    for epoch in range(epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        train_loss, train_correct, train_total = 0.0, 0, 0
        for images, labels in trainloader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            train_total += labels.size(0)
            train_correct += (outputs.argmax(1) == labels).sum().item()
        writer.add_scalar("Loss/train", train_loss / len(trainloader), epoch)
        writer.add_scalar("Accuracy/train", train_correct / train_total, epoch)
        model.eval()
        val_loss, val_correct, val_total = 0.0, 0, 0
        with torch.no_grad():
            for images, labels in testloader:
                images, labels = images.to(device), labels.to(device)
                outputs = model(images)
                val_loss += criterion(outputs, labels).item()
                val_total += labels.size(0)
                val_correct += (outputs.argmax(1) == labels).sum().item()
        val_acc = val_correct / val_total
        writer.add_scalar("Loss/val", val_loss / len(testloader), epoch)
        writer.add_scalar("Accuracy/val", val_acc, epoch)
        writer.add_scalars("Losses", {"train": train_loss / len(trainloader), "val": val_loss / len(testloader)}, epoch)
        writer.add_image("Sample Images", torchvision.utils.make_grid(images[:8], normalize=True), epoch)
        for name, param in model.named_parameters():
            writer.add_histogram(name, param, epoch)
            if param.grad is not None:
                writer.add_histogram(f"{name}.grad", param.grad, epoch)
        writer.flush()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    writer.close()
    return {"epochs": seconds, "cpu": cpu, "accuracy": val_acc}
