"""Image classification (built-in: scikit-learn's handwritten digits): a Vision Transformer over patches.

Prepared layout: data/image/{train,val,test}/<class>/<image>.png. Training augments with albumentations (flip, shift,
rotate, scale). Attention map: rollout over the patch grid, drawn over the image. Served input: ``{"image": ...}``, a
base64 PNG or JPEG, or pixel values 0..255 as an H x W [x C] array; resized and normalised as in training.

With ``model.backbone`` (a pretrained ViT, attn_models/pretrained.py PretrainedImageClassifier) the backbone's image
processor decides how pixels reach the model: images are read at its size (whatever data.image_size, the size the
prepared images are stored at: a mismatch is resized, as the processor itself would) and with the backbone's channels,
resized with its filter and normalised with its mean and std, after the augmentation. Its settings are in the
checkpoint's model_args (``image_processor``), so serving decodes requests the same way (``pixel_format``).
"""

from typing import Literal, NamedTuple

from pydantic import Field, model_validator

from tasks.defaults import AUTO, augment_strength, auto_or_number, finetune_defaults, is_auto, size_values
from tasks.kinds.classification import Classifier
from tasks.schema import (
    BackboneParams,
    DataSection,
    ModelParams,
    Section,
    SplitFraction,
    Strength,
    TaskParams,
    TrainParams,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class ImageBuiltinData(Section):
    """scikit-learn's 8x8 handwritten digits, upscaled (tasks/data/builtin_image.py)."""

    digit_size: int | None = Field(None, ge=8)  # None: the digit fills the image; smaller: placed at random
    clutter: int = Field(0, ge=0, le=32)  # fragments of other digits scattered over the image
    val_fraction: float = SplitFraction
    test_fraction: float = SplitFraction


class ImageAugment(Section):
    horizontal_flip: bool = False  # natural images (CIFAR) yes; digits no
    max_shift: float = Field(0.1, ge=0, le=0.5)  # fraction of the image size
    max_rotate: float = Field(10.0, ge=0, le=180)  # degrees
    scale_range: tuple[float, float] = (0.9, 1.1)
    # RandAugment (Cubuk et al., 2020): rand_ops operations drawn per image from tasks/data/datasets.py's
    # rand_augment list (contrast, colour, exposure, shear), each at rand_magnitude of its range. 0: none.
    rand_ops: int = Field(0, ge=0, le=4)
    rand_magnitude: float = Field(0.5, ge=0, le=1)
    # scales the shift, the rotation, the zoom's distance from 1 and rand_magnitude (1: as written); auto: from the
    # training images per class (tasks/defaults.py). Default 1: a params file without it trains as it did before the
    # key existed.
    strength: Strength = 1.0

    def scaled(self):
        """The augmentation at its strength (a resolved one), within each setting's limits; at strength 1 this very
        augmentation, unchanged."""
        if self.strength == 1:
            return self
        s, (low, high) = self.strength, self.scale_range
        return self.model_copy(update={"max_shift": min(0.5, self.max_shift * s),
                                       "max_rotate": min(180.0, self.max_rotate * s),
                                       "scale_range": (max(0.05, 1 + (low - 1) * s), 1 + (high - 1) * s),
                                       "rand_magnitude": min(1.0, self.rand_magnitude * s)})  # fmt: skip


class ImageImport(Section):
    """folders: <path>/{train,val,test}/<class>/<image> (missing splits carved from train) or <path>/<class>/<image>;
    csv: a manifest file with an image path (relative to the manifest's folder) and a label per row."""

    path: str = Field(min_length=1)  # relative paths are read from the project root
    layout: Literal["folders", "csv"] = "folders"
    image_column: str = "image"  # csv layout only
    label_column: str = "label"
    split_column: str | None = None  # csv: a column holding train/val/test; None: split by the fractions
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)


class ImageData(DataSection):
    builtin: ImageBuiltinData | None = None
    import_from: ImageImport | None = None  # when set, it is used instead of builtin
    image_size: int = Field(32, ge=8, le=256)  # images are read at image_size x image_size, whatever their source
    channels: int = Field(1, ge=1, le=3)
    augment: ImageAugment = ImageAugment()


def patch_size_for(image_size: int, stem: str) -> int:
    """The `auto` patch size: the divisor of the image size nearest its square root (a tie: the smaller patch, more
    tokens), so the token grid grows like the patch (32 px: 4 px patches, an 8 x 8 grid; 224 px: 14 px, 16 x 16); the
    conv stem takes a power of two of at least 2."""
    sides = [p for p in range(1, image_size + 1) if image_size % p == 0]
    if stem == "conv":
        sides = [p for p in sides if p >= 2 and not p & (p - 1)]
    if not sides:
        raise ValueError(f"model.patch_size auto with stem 'conv' needs an even data.image_size (got {image_size})")
    return min(sides, key=lambda p: (abs(p - image_size**0.5), p))


class ImageModel(ModelParams):
    patch_size: auto_or_number(int, 1, 256) = AUTO  # auto: from data.image_size (patch_size_for)
    stem: Literal["patch", "conv"] = "patch"  # conv: 3x3 stride-2 convolutions down to the patch grid (small data)
    backbone: BackboneParams | None = None  # fine-tune a pretrained ViT (and read images as its processor does)

    @model_validator(mode="after")
    def backbone_sets_the_patches(self):
        """A backbone brings its own patches, width, depth and heads (the size keys and patch_size resolve from its
        config: a number that differs from it stops training, Image.backbone_values); its head reads the class
        token through its own patch embedding."""
        if self.backbone is None:
            return self
        clashing = ["stem"] * (self.stem != "patch") + ["pool"] * (self.pool != "cls")
        if clashing:
            raise ValueError(f"{', '.join(clashing)}: set by the backbone (leave them out with model.backbone)")
        return self

    @model_validator(mode="after")
    def conv_stem_patch_size(self):
        if is_auto(self.patch_size):
            return self
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"stem 'conv' needs a power-of-two patch_size >= 2 (got {self.patch_size})")
        return self


class ImageTrain(TrainParams):
    # batch mixing (tasks/training/mixing.py): mixup and CutMix with a share drawn from Beta(alpha, alpha), e.g. 0.8
    # and 1.0 (timm's); with both, a batch gets one at even odds. 0: off. Pays with longer training on small data.
    mixup_alpha: float = Field(0.0, ge=0, le=10)
    cutmix_alpha: float = Field(0.0, ge=0, le=10)


class ImageParams(TaskParams):
    kind: Literal["image"]
    data: ImageData
    model: ImageModel
    train: ImageTrain

    _finetune_defaults = model_validator(mode="before")(finetune_defaults)

    @model_validator(mode="after")
    def digit_fits_image(self):
        builtin = self.data.builtin
        if builtin and builtin.digit_size and builtin.digit_size > self.data.image_size:
            raise ValueError(
                f"data.builtin.digit_size ({builtin.digit_size}) must be at most data.image_size "
                f"({self.data.image_size})"
            )
        return self

    @model_validator(mode="after")
    def patches_tile_image(self):
        if is_auto(self.model.patch_size):
            patch_size_for(self.data.image_size, self.model.stem)  # one exists
            return self
        if self.data.image_size % self.model.patch_size:
            raise ValueError(
                f"model.patch_size ({self.model.patch_size}) must divide data.image_size ({self.data.image_size})"
            )
        return self


class PixelFormat(NamedTuple):
    """How pixels reach the model: the side images are read at, their channels, the PIL resample filter, the patch
    side (the attention map's cell), the normalisation ((pixel / max_pixel - mean) / std per channel)."""

    size: int
    channels: int
    resample: int
    patch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_pixel: float

    def transforms(self, augment=None, seed: int = 0):
        """tasks.data.datasets.image_transforms normalising as this format says (augment: the training's)."""
        from tasks.data.datasets import image_transforms

        return image_transforms(self.channels, augment, seed, self.mean, self.std, self.max_pixel)

    def black(self):
        """A black pixel, normalised: (C, 1, 1)."""
        import torch

        return torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(-1, 1, 1)


BILINEAR = 2  # PIL's (and transformers' PILImageResampling) bilinear filter: how the kind resizes by default
BACKBONE_KEY = "model.backbone.source"


def pixel_format(model_args: dict) -> PixelFormat:
    """The pixel format of a model, from its arguments (a checkpoint's model_args): the backbone's image processor's
    when it has one, else the kind's own (data.image_size and data.channels, normalised to [-1, 1])."""
    processor = model_args.get("image_processor")
    if processor is None:
        channels = model_args["in_channels"]
        return PixelFormat(model_args["image_size"], channels, BILINEAR, model_args["patch_size"], (0.5,) * channels,
                           (0.5,) * channels, 255.0)  # fmt: skip
    return processor_format(processor, model_args["backbone_config"])


def processor_format(processor: dict, config: dict) -> PixelFormat:
    """The pixel format of a backbone's image processor (its settings as JSON) and config: a square size that is the
    backbone's image size, a mean and std per channel of the backbone; ValueError naming the key otherwise."""
    size, channels, side = processor.get("size") or {}, config["num_channels"], config["image_size"]
    if not processor.get("do_resize", True) or size.get("height") != side or size.get("width") != side:
        raise ValueError(f"{BACKBONE_KEY}: the image processor must resize to the backbone's {side} x {side} "
                         f"images (its size: {size})")  # fmt: skip
    normalize = processor.get("do_normalize", True)
    mean = tuple(processor["image_mean"]) if normalize else (0.0,) * channels
    std = tuple(processor["image_std"]) if normalize else (1.0,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"{BACKBONE_KEY}: the image processor normalises {len(mean)} channels, the backbone takes "
                         f"{channels}")  # fmt: skip
    max_pixel = 1 / processor["rescale_factor"] if processor.get("do_rescale", True) else 1.0
    return PixelFormat(side, channels, processor.get("resample", BILINEAR), config["patch_size"], mean, std, max_pixel)


class Image(Classifier):
    name, order, params = "image", 20, ImageParams
    pretrained_class = "attn_models.pretrained:PretrainedImageClassifier"
    input_args = ("image_processor",)
    input_column = "image"
    model_class = "attn_models.vit:VisionTransformer"
    generator = "tasks.data.builtin_image:generate_image_dataset"
    importer = "tasks.data.importers:import_images"
    manifest_layouts = ("csv",)
    serving_input = "a base64 PNG or JPEG, or pixel values 0..255 as an H x W [x C] array; resized to the model's size"
    limits = (
        "Images are read at data.image_size with data.channels channels (with a backbone: its image processor's "
        "size and its channels), whatever their size; rollout is per patch, "
        "coarse on small images, and not a faithful explanation of the decision."
    )

    def builtin_arguments(self, section, seed):
        return super().builtin_arguments(section, seed) | {"image_size": section.data.image_size}

    def training_loss(self, model, inputs, targets, train):
        """The batch mixed by train.mixup_alpha / cutmix_alpha (as it is when both are 0), each example's loss shared
        between its own label and its partner's; accuracy is counted against its own label."""
        from tasks.training.mixing import mix_batch, mixed_loss

        mixed, partner, share = mix_batch(inputs, train.mixup_alpha, train.cutmix_alpha)
        logits, labels = self.logits_and_labels(model, mixed, targets)
        return mixed_loss(logits, labels, partner, share, train.label_smoothing), logits, labels

    def split_files(self, data_dir, split):
        return sorted(p for p in (data_dir / split).glob("*/*") if p.is_file())

    def check_backbone(self, section, root, task):
        """Before a run opens: the backbone's image processor loads and fits it (UserError naming the key)."""
        from tasks import backbones
        from tasks.errors import UserError

        backbone = section.model.backbone
        config = backbones.load_model_config(backbone, root, task)
        try:
            processor_format(backbones.image_processor_config(backbone, root, task), config.to_dict())
        except ValueError as error:  # its message starts with BACKBONE_KEY
            raise UserError(f"tasks.{task}.{error}") from None

    def auto_values(self, section, data_dir, tokenizer):
        """Model size from the training images' count (with a backbone: from its config), the patch size from the
        image size (the backbone's), the augmentation's strength from the training images per class."""
        images = len(self.split_files(data_dir, "train"))
        if section.model.backbone is not None:
            values = self.backbone_values(section)
        else:
            values = size_values(section.model, images)
            if is_auto(section.model.patch_size):
                values["model.patch_size"] = patch_size_for(section.data.image_size, section.model.stem)
        if is_auto(section.data.augment.strength):
            classes = sum(1 for p in (data_dir / "train").iterdir() if p.is_dir())
            values["data.augment.strength"] = augment_strength(images / max(1, classes))
        return values

    def load_splits(self, data_dir, section, seed, tokenizer):
        from tasks.data.datasets import DecodedCache, LabelledItems, Splits, read_image

        class_names = sorted(p.name for p in (data_dir / "train").iterdir() if p.is_dir())
        form = pixel_format(self.input_model_args(section))

        def split(name, transform, augmented=False):
            paths = sorted(p for p in (data_dir / name).glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
            labels = [class_names.index(p.parent.name) for p in paths]
            pixels = DecodedCache(lambda p: read_image(p, form.channels, form.size, form.resample))
            load = lambda p: transform(image=pixels(p).copy())["image"]  # noqa: E731  (the cached pixels stay)
            return LabelledItems(paths, labels, load, augmentation=transform if augmented else None)

        plain = form.transforms()
        return Splits(
            split("train", form.transforms(section.data.augment.scaled(), seed), augmented=True),
            split("val", plain),
            split("test", plain),
            class_names,
        )

    def backbone_values(self, section) -> dict:
        """The size keys and patch_size from the backbone's config: `auto` ones resolved, a number that differs
        stops training, naming the key."""
        config = self.backbone_config(section)
        values = self.backbone_size_values(section, config)
        given = section.model.patch_size
        if not is_auto(given) and given != config.patch_size:
            raise ValueError(f"model.patch_size: {given}, but the backbone's is {config.patch_size} (leave it out)")
        return values | ({"model.patch_size": config.patch_size} if is_auto(given) else {})

    def input_model_args(self, section) -> dict:
        """The model_args that say what the model's input is (pixel_format reads them): the image size, patch size
        and channels; with a backbone its config and its image processor's settings."""
        backbone = section.model.backbone
        if backbone is None:
            data = section.data
            return dict(image_size=data.image_size, patch_size=section.model.patch_size, in_channels=data.channels)
        from pathlib import Path

        from attn_models.pretrained import backbone_config
        from tasks.backbones import image_processor_config

        return {"backbone_config": backbone_config(self.backbone_config(section)),
                "image_processor": image_processor_config(backbone, Path("/"))}  # fmt: skip

    def model_args(self, section, splits, tokenizer):
        m, classes = section.model, len(splits.class_names)
        if m.backbone is not None:
            self.backbone_values(section)  # the sizes given are the backbone's (resolve checks only `auto` sections)
            return self.input_model_args(section) | {"num_classes": classes, "dropout": m.dropout}
        return m.attention_args() | self.input_model_args(section) | dict(num_classes=classes, depth=m.depth,
                                                                          stem=m.stem)  # fmt: skip

    def serving_example(self, data_dir, section):
        import base64

        return base64.b64encode(self.split_files(data_dir, "test")[0].read_bytes()).decode()

    def attention_figure(self, model, inputs, relevance, true, predicted, tokenizer):
        """The image, and the rollout (one value per patch) upsampled over it."""
        import matplotlib.pyplot as plt
        import numpy as np
        import torch
        import torch.nn.functional as F

        from tasks.evaluation.plots import sample_title

        image = inputs[0] - inputs[0].min()  # normalised pixels (the kind's or a backbone's) back to 0..1, shown
        image = (image / image.max().clamp(min=1e-12)).permute(1, 2, 0).squeeze(-1).numpy()
        grid = int(round(len(relevance) ** 0.5))
        patches = torch.from_numpy(relevance.reshape(1, 1, grid, grid).astype(np.float32))
        heatmap = F.interpolate(patches, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
        figure, (left, right) = plt.subplots(1, 2, figsize=(5, 2.8))
        left.imshow(image, cmap="gray")
        left.set_title("input", fontsize=9)
        right.imshow(image, cmap="gray")
        right.imshow(heatmap.numpy(), cmap="jet", alpha=0.5)
        right.set_title("attention rollout", fontsize=9)
        for axes in (left, right):
            axes.axis("off")
        figure.suptitle(sample_title(true, predicted), fontsize=9)
        figure.tight_layout()
        return figure

    viewer_kind = "image"

    def removal_baseline(self, item, e):
        """A black image (pixel 0, normalised: -1 with the kind's normalisation): the built-in digits' background."""
        return pixel_format(e.checkpoint["model_args"]).black().expand_as(item).clone()

    def localization_target(self, index, item, tokens, e):
        """On built-in digits drawn without clutter every lit pixel is the digit's ink: each patch's share of ink."""
        import torch.nn.functional as F

        if not e.builtin_data or e.section.data.builtin.clutter:
            return None
        ink = (item > item.min()).any(dim=0).float()  # (H, W): the background is the darkest value
        return F.avg_pool2d(ink[None, None], pixel_format(e.checkpoint["model_args"]).patch_size).flatten()

    def viewer_input(self, item, tokens, e):
        from tasks.evaluation.plots import png_base64

        form = pixel_format(e.checkpoint["model_args"])
        grid = form.size // form.patch_size
        return {"picture": png_base64(item.mean(dim=0).numpy()), "grid": [grid, grid]}

    def input_features(self, inputs, tokenizer):
        """Brightness and contrast of the input as the model sees it (normalised: -1 black, 1 white): inverted, darker,
        washed-out or differently sized pictures move them."""
        return {"pixel_mean": float(inputs.mean()), "pixel_std": float(inputs.std())}

    def request_input(self, value, model_args, tokenizer, limits):
        from tasks.data.datasets import image_pixels
        from tasks.data.requests import open_image

        form = pixel_format(model_args)
        pixels = image_pixels(open_image(value, limits), form.channels, form.size, form.resample)
        return form.transforms()(image=pixels)["image"].unsqueeze(0), {}


SPEC = Image()
