"""Write the files of the example "your own model and data" (config/experiments/own-model-data.yaml).

Everything comes from data embedded in the installed packages (scikit-learn's 8x8 digits, a
fixed vocabulary) and a random initialization, so it runs offline and gives the same files on
every machine::

    python tools/own_example.py                 # writes resources/own-example/
    snakemake --cores 2 --configfile config/experiments/own-model-data.yaml

Files written under the output folder (default ``resources/own-example``):

- ``images/train/<digit>/<i>.png``: an ImageFolder of the digits 0, 1 and 2 (3 classes, 537
  images, 32x32 grayscale PNGs upscaled from the 8x8 digits; no ``test/`` folder, so the
  variant's ``test_fraction`` holds out a test split);
- ``table.csv``: 901 rows of the digits 0-4 with the ink of each of the 8 image rows
  (``row0``..``row7``, numeric), a categorical column ``ink`` (``light``, ``medium``, ``heavy``)
  and a label column ``digit`` (``zero``..``four``); about 5 % of the ``row3`` and ``ink``
  cells are empty (imputed inside each fold);
- ``texts.jsonl``: 360 sentences on three topics (label ``topic``), in 180 pairs: each sentence
  and a reordering of it share a ``pair`` id (the group column: a pair stays in one fold);
- ``arrays.npz``: every digit as ``(N, 1, 8, 8)`` float32 in [0, 1], ``x_train``/``y_train``
  (1437) and ``x_test``/``y_test`` (360);
- ``my_model.py``: the user's own ``nn.Module`` (a small ConvNet) and its factory ``build``;
- ``resnet18.pt``: the state_dict of torchvision's ``resnet18`` with a 3-class head, randomly
  initialized (seed 0), analysed at 32x32 without training (``epochs: 0``). (A randomly
  initialized ``mobilenet_v3_small`` is no good here: its deeper features shrink to ~1e-9,
  below what the float16 activation dumps hold.)
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np

USER_MODEL = textwrap.dedent(
    '''
    """A small ConvNet of one's own: any nn.Module works (config key models.<name>.factory)."""

    from torch import nn


    class SmallConvNet(nn.Module):
        def __init__(self, input_shape, width, n_classes):
            super().__init__()
            channels, height, breadth = input_shape
            self.conv1 = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
            self.conv2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU())
            flat = 2 * width * height * breadth
            self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.ReLU())
            self.head = nn.Linear(32, n_classes)

        def forward(self, x):
            return self.head(self.hidden(self.conv2(self.conv1(x))))


    def build(input_shape, n_classes, width=8):
        """input_shape (C, H, W) and n_classes come from the data set; width from kwargs."""
        return SmallConvNet(tuple(input_shape), width, n_classes)
    '''
).lstrip()

TOPICS = {
    "weather": ["rain", "wind", "snow", "clouds", "sunshine", "storm", "fog", "frost"],
    "food": ["bread", "soup", "cheese", "apples", "rice", "pasta", "honey", "beans"],
    "sport": ["tennis", "football", "rowing", "cycling", "chess", "skiing", "boxing", "golf"],
}
VERBS = ["liked", "watched", "talked about", "remembered", "wrote about", "waited for"]
PEOPLE = ["Anna", "the neighbours", "my uncle", "the children", "Tom", "our teacher"]


def write_images(out: Path, digits_x: np.ndarray, digits_y: np.ndarray) -> int:
    from PIL import Image

    n = 0
    for label in (0, 1, 2):
        folder = out / "images" / "train" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(digits_x[digits_y == label]):
            pixels = np.clip(img.reshape(8, 8) * 16, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").resize((32, 32), Image.NEAREST).save(
                folder / f"{i}.png"
            )
            n += 1
    return n


def write_table(out: Path, digits_x: np.ndarray, digits_y: np.ndarray, rng) -> int:
    import pandas as pd

    keep = digits_y < 5
    x, y = digits_x[keep].reshape(-1, 8, 8), digits_y[keep]
    frame = pd.DataFrame(x.sum(axis=2), columns=[f"row{r}" for r in range(8)])
    total = x.sum(axis=(1, 2))
    frame["ink"] = np.array(["light", "medium", "heavy"])[
        np.searchsorted(np.quantile(total, [1 / 3, 2 / 3]), total)
    ]
    frame["digit"] = np.array(["zero", "one", "two", "three", "four"])[y]
    frame.loc[rng.random(len(frame)) < 0.05, "row3"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, "ink"] = None
    frame.to_csv(out / "table.csv", index=False)
    return len(frame)


def write_texts(out: Path, rng, per_topic: int = 60) -> int:
    rows = []
    for topic, words in TOPICS.items():
        for _ in range(per_topic):
            who, verb = rng.choice(PEOPLE), rng.choice(VERBS)
            a, b = rng.choice(words, size=2, replace=False)
            pair = len(rows) // 2
            rows.append({"text": f"{who} {verb} {a} and {b}", "topic": topic, "pair": pair})
            rows.append({"text": f"{a} and {b} , {who} {verb}", "topic": topic, "pair": pair})
    with open(out / "texts.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return len(rows)


def write_arrays(out: Path, digits_x: np.ndarray, digits_y: np.ndarray, rng) -> None:
    order = rng.permutation(len(digits_y))
    x = (digits_x[order] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits_y[order].astype(np.int64)
    n_test = 360
    np.savez(
        out / "arrays.npz",
        x_train=x[n_test:],
        y_train=y[n_test:],
        x_test=x[:n_test],
        y_test=y[:n_test],
    )


def write_weights(out: Path) -> None:
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3)
    torch.save(net.state_dict(), out / "resnet18.pt")


def write_example(out: str | Path = "resources/own-example") -> Path:
    """Write every file of the example into ``out`` (module docstring); returns ``out``."""
    from sklearn.datasets import load_digits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x, y = digits.data, digits.target
    rng = np.random.default_rng(0)
    write_images(out, x, y)
    write_table(out, x, y, rng)
    write_texts(out, rng)
    write_arrays(out, x, y, rng)
    (out / "my_model.py").write_text(USER_MODEL)
    write_weights(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="resources/own-example", help="output folder")
    print(write_example(parser.parse_args().out))  # noqa: T201


if __name__ == "__main__":
    main()
