"""Check a composed config before training: wrong types and values fail here, naming the key and the fix.

Unknown keys (``optimizer.lrr=...``) are caught earlier, in :mod:`visiontrain.config.overrides`; this module
checks what composition cannot know: types, ranges, backbone names, data locations and hardware availability.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from visiontrain.errors import ConfigError, WeightsError


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise ConfigError(key, "is required but not set", f"pass {key}=<value> on the command line") from None
    except InterpolationResolutionError as error:  # ${oc.env:DB_URL} with DB_URL unset, most often
        raise ConfigError(key, f"cannot be resolved ({str(error).splitlines()[0]})", "export the environment "
                          "variable it names before the run, or set the key directly") from None


def _number(cfg: DictConfig, key: str, example: str, *, integer: bool = False, minimum: float | None = None,
            exclusive: bool = False, maximum: float | None = None, optional: bool = False) -> float | int | None:
    value = _value(cfg, key)
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a number"
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not valid_type:
        raise ConfigError(key, f"must be {kind}, got {value!r} ({type(value).__name__})", f"{key}={example}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise ConfigError(key, f"must be {bound}, got {value}", f"{key}={example}")
    if maximum is not None and value > maximum:
        raise ConfigError(key, f"must be <= {maximum}, got {value}", f"{key}={example}")
    return value


def _choice(cfg: DictConfig, key: str, choices: tuple[Any, ...]) -> Any:
    value = _value(cfg, key)
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(map(str, choices))}; got {value!r}", f"{key}={choices[0]}")
    return value


def _boolean(cfg: DictConfig, key: str) -> bool:
    value = _value(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {value!r}", f"{key}=true")
    return value


MONITORABLE = ("val/acc", "val/loss", "val/f1_macro", "val/acc_top5")
MINIMISED = ("val/loss", "val/mse", "val/rmse", "val/mae")


def validate_train_config(cfg: DictConfig) -> None:
    """Every check that can fail without touching data or weights, then the data location."""
    from visiontrain.tasks import TASKS

    task = _choice(cfg, "task", TASKS)
    if task == "tabular":
        from visiontrain.config.tabular import TABULAR_CHECKS

        checks = TABULAR_CHECKS
    else:  # model before augment: the input size comes from the backbone
        _check_image_groups(cfg)
        checks = (_check_run, _check_optimizer, _check_schedule, _check_trainer, _check_model, _check_augment,
                  _check_data)
    _check_no_literal_secrets(cfg)
    for check in (*checks, _check_tracking):
        check(cfg)


def validate_sweeper(cfg: DictConfig) -> None:
    """The sweeper's settings (``hydra.sweeper.*`` of a config composed with its Hydra node), checked once
    before a multirun launches its first trial.

    Inside a trial they would fail every trial alike and the sweep would go on; and a direction against
    ``monitor.mode`` fails nothing at all, it just searches for the worst model.
    """
    sweeper = OmegaConf.select(cfg, "hydra.sweeper") or {}
    if OmegaConf.is_config(sweeper):  # an Optuna storage URL with its password written into a file
        _check_no_literal_secrets(sweeper, "hydra.sweeper")
    if "n_trials" in sweeper:
        _number(cfg, "hydra.sweeper.n_trials", "20", integer=True, minimum=1)
    if "n_jobs" in sweeper:
        _number(cfg, "hydra.sweeper.n_jobs", "1", integer=True, minimum=1)
    if "max_failure_rate" in sweeper:
        _number(cfg, "hydra.sweeper.max_failure_rate", "1.0", minimum=0, maximum=1)
    if "direction" not in sweeper:
        return
    mode = OmegaConf.select(cfg, "monitor.mode")
    wanted = {"max": "maximize", "min": "minimize"}.get(str(mode))
    direction = sweeper["direction"]
    if OmegaConf.is_list(direction):  # a multi-objective study: the monitored metric is not the only objective
        return
    if direction not in ("maximize", "minimize"):
        raise ConfigError("hydra.sweeper.direction", f"must be maximize or minimize, got {direction!r}",
                          f"hydra.sweeper.direction={wanted or 'maximize'}")
    if wanted and direction != wanted:
        metric = OmegaConf.select(cfg, "monitor.metric")
        raise ConfigError("hydra.sweeper.direction", f"is {direction}, but monitor.mode={mode} ({metric}): the "
                          "search would look for the worst model", f"hydra.sweeper.direction={wanted}")


def validate_evaluate_config(cfg: DictConfig) -> None:
    """`visiontrain evaluate`: its own keys (the checkpoint is checked when it is read)."""
    from visiontrain.models.tta import TTA_MODES

    _choice(cfg, "split", ("val", "test"))
    _choice(cfg, "tta", TTA_MODES)


def validate_lr_find_config(cfg: DictConfig) -> None:
    """`visiontrain lr_find`: everything `train` checks, then the range test's own keys."""
    from visiontrain.training.lr_find import LR_FIND_MODES, MIN_POINTS

    if OmegaConf.select(cfg, "task") == "tabular":
        raise ConfigError("task", "lr_find tunes image classifiers; tabular models train with their own rates",
                          "visiontrain lr_find experiment=hymenoptera data.root=/path/to/images")
    validate_train_config(cfg)
    min_lr = _number(cfg, "lr_find.min_lr", "1e-6", minimum=0, exclusive=True)
    max_lr = _number(cfg, "lr_find.max_lr", "1.0", minimum=0, exclusive=True)
    if max_lr <= min_lr:
        raise ConfigError("lr_find.max_lr", f"is {max_lr}, not above lr_find.min_lr={min_lr}: nothing to probe",
                          f"lr_find.max_lr={min_lr * 1e6:g}")
    _number(cfg, "lr_find.num_training", "100", integer=True, minimum=MIN_POINTS)
    _choice(cfg, "lr_find.mode", LR_FIND_MODES)
    _number(cfg, "lr_find.early_stop_threshold", "4.0", minimum=1, exclusive=True, optional=True)  # null: no stop


def _check_image_groups(cfg: DictConfig) -> None:
    """Table data or a tabular model in an image run: point at the tabular experiments."""
    if OmegaConf.select(cfg, "data.kind") == "table":
        raise ConfigError("data", "is a table, but this run trains an image classifier",
                          "experiment=churn (or experiment=diabetes), which selects task=tabular")
    if OmegaConf.select(cfg, "model.kind") in ("mlp", "estimator"):
        raise ConfigError("model", "is a tabular model, but this run trains an image classifier",
                          "model=timm for images, or experiment=churn model=... for tables")


def _check_run(cfg: DictConfig, monitorable: tuple[str, ...] = MONITORABLE) -> None:
    _number(cfg, "seed", "42", integer=True, minimum=0)
    metric = _choice(cfg, "monitor.metric", monitorable)
    mode = _choice(cfg, "monitor.mode", ("max", "min"))
    minimised = metric in MINIMISED
    if minimised != (mode == "min"):
        raise ConfigError("monitor.mode", f"{metric} should be {'minimised' if minimised else 'maximised'}",
                          f"monitor.mode={'min' if minimised else 'max'}")
    _boolean(cfg, "export.onnx")
    _check_opset(cfg)
    _number(cfg, "export.parity_images", "32", integer=True, minimum=0)
    _number(cfg, "export.atol", "1e-3", minimum=0, exclusive=True)
    if OmegaConf.select(cfg, "export.quantize") is not None:
        _choice(cfg, "export.quantize", ("int8",))
        if cfg.task == "tabular":
            raise ConfigError("export.quantize", "int8 quantization is for image models; a churn model is already "
                              "a fraction of a millisecond per row", "export.quantize=null")
        _number(cfg, "export.calibration_images", "128", integer=True, minimum=1)
    ckpt = _value(cfg, "ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).expanduser().is_file():
        raise ConfigError("ckpt_path", f"checkpoint {ckpt} does not exist", "ckpt_path=<run dir>/checkpoints/last.ckpt")


def _check_optimizer(cfg: DictConfig) -> None:
    if not OmegaConf.select(cfg, "optimizer._target_"):
        raise ConfigError("optimizer._target_", "no optimizer class is set", "optimizer=adamw (or sgd)")
    from visiontrain.config.targets import UntrustedTarget, check_targets

    try:
        check_targets(cfg.optimizer, "optimizer", "optimizer")
    except UntrustedTarget as error:
        raise ConfigError("optimizer._target_", str(error), "optimizer=adamw (or sgd), or a torch.optim class") from None
    _number(cfg, "optimizer.lr", "1e-3", minimum=0, exclusive=True)
    if "weight_decay" in cfg.optimizer:
        _number(cfg, "optimizer.weight_decay", "0.05", minimum=0)


def _check_schedule(cfg: DictConfig) -> None:
    freeze = _number(cfg, "schedule.freeze_epochs", "2", integer=True, minimum=0)
    epochs = _number(cfg, "trainer.max_epochs", "10", integer=True, minimum=1)
    if freeze >= epochs and cfg.schedule.unfreeze != 0:
        raise ConfigError("schedule.freeze_epochs", f"is {freeze} but trainer.max_epochs is {epochs}, so the "
                          "backbone would never be fine-tuned", f"schedule.freeze_epochs={max(0, epochs - 1)} "
                          "or schedule=linear_probe")
    unfreeze = _value(cfg, "schedule.unfreeze")
    if unfreeze != "all" and (isinstance(unfreeze, bool) or not isinstance(unfreeze, int) or unfreeze < 0):
        raise ConfigError("schedule.unfreeze", f"must be 'all' or a number of top blocks >= 0, got {unfreeze!r}",
                          "schedule.unfreeze=all")
    _number(cfg, "schedule.backbone_lr_scale", "0.1", minimum=0)
    _number(cfg, "schedule.layer_decay", "0.75", minimum=0, exclusive=True, maximum=1, optional=True)
    _number(cfg, "schedule.warmup_epochs", "1", minimum=0)
    _number(cfg, "schedule.min_lr_ratio", "0.01", minimum=0, maximum=1)
    _choice(cfg, "schedule.bn_stats", ("frozen", "train"))


def _check_trainer(cfg: DictConfig) -> None:
    accelerator = str(_value(cfg, "trainer.accelerator"))
    if accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        raise ConfigError("trainer", "trainer=tpu needs torch_xla, which is not installed",
                          "on a TPU VM: pip install 'torch_xla[tpu]' matching your torch version; elsewhere "
                          "use trainer=cpu or trainer=gpu")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator", "asks for a GPU but CUDA sees none on this machine",
                              "trainer=cpu (or run on a machine with an NVIDIA GPU and driver)")
    _number(cfg, "trainer.accumulate_grad_batches", "1", integer=True, minimum=1)
    _check_precision(cfg)
    _check_devices(cfg)
    _number(cfg, "trainer.gradient_clip_val", "1.0", minimum=0, optional=True)  # null: no clipping
    if OmegaConf.select(cfg, "trainer.channels_last") is not None:
        _boolean(cfg, "trainer.channels_last")
    from visiontrain.training.hardware import COMPILE_MODES

    compile_mode = OmegaConf.select(cfg, "trainer.compile")
    valid = isinstance(compile_mode, bool) or (isinstance(compile_mode, str) and compile_mode in COMPILE_MODES)
    if compile_mode is not None and not valid:
        raise ConfigError("trainer.compile", f"must be one of {', '.join(map(str, COMPILE_MODES))}, got "
                          f"{compile_mode!r}", "trainer.compile=true")


def _check_model(cfg: DictConfig) -> None:
    from visiontrain.models.backbone import check_backbone_name
    from visiontrain.models.weight_source import weight_source

    backbone = _value(cfg, "model.backbone")
    if backbone is not None and not isinstance(backbone, str):
        raise ConfigError("model.backbone", f"must be a timm model name, got {backbone!r}", "model.backbone=resnet18")
    _boolean(cfg, "model.pretrained")
    source = weight_source(cfg.model)  # one weights source, and a backbone that fits it
    check_backbone_name(source.backbone)
    if source.packaged:
        try:
            source.packaged.path()  # a missing package fails now, before any data is read
        except WeightsError as error:
            raise ConfigError("model.weights", str(error), source.packaged.pip_install) from None
    _number(cfg, "model.drop_rate", "0.2", minimum=0, maximum=1)
    _number(cfg, "model.label_smoothing", "0.1", minimum=0, maximum=1)
    weights = _value(cfg, "model.weights_file")
    if weights is not None and not Path(str(weights)).expanduser().is_file():
        raise ConfigError("model.weights_file", f"file {weights} does not exist",
                          "model.weights_file=/path/to/weights.safetensors (or .pth / .ckpt), or null")
    _number(cfg, "model.input.image_size", "224", integer=True, minimum=1, optional=True)
    _number(cfg, "model.input.crop_pct", "0.875", minimum=0, exclusive=True, maximum=1, optional=True)
    for key in ("model.input.mean", "model.input.std"):
        value = _value(cfg, key)
        if value is not None and (len(value) != 3 or not all(isinstance(v, (int, float)) for v in value)):
            raise ConfigError(key, f"must be three numbers (R, G, B) or null, got {value!r}", f"{key}=[0.5,0.5,0.5]")
    if OmegaConf.select(cfg, "model.ema") is not None:
        _check_ema(cfg)


def _check_ema(cfg: DictConfig) -> None:
    """``model.ema``: a decay in (0, 1); 1 would never move the average away from the starting weights."""
    _boolean(cfg, "model.ema.enabled")
    decay = _number(cfg, "model.ema.decay", "0.999", minimum=0, exclusive=True, maximum=1)
    if decay == 1:
        raise ConfigError("model.ema.decay", "must be < 1: at 1 the average never leaves the starting weights",
                          "model.ema.decay=0.999")
    _boolean(cfg, "model.ema.warmup")


def _check_augment(cfg: DictConfig) -> None:
    if not OmegaConf.is_list(_value(cfg, "augment.train")):
        raise ConfigError("augment.train", "must be a list of albumentations transforms",
                          "augment=light (or none / strong), or a list of {_target_: albumentations.X, ...}")
    from visiontrain.data.transforms import build_train_transform
    from visiontrain.tasks.image import input_spec_from, train_steps_for

    spec = input_spec_from(cfg)
    build_train_transform(spec, train_steps_for(cfg, spec))  # a bad transform fails here, naming its index
    if OmegaConf.select(cfg, "augment.mixup") is not None:
        _check_mixup(cfg)


def _check_mixup(cfg: DictConfig) -> None:
    """``augment.mixup``: ranges and mode; when on, an even batch and one label smoothing, not two."""
    from visiontrain.data.mixup import MIXUP_MODES

    mixup = _number(cfg, "augment.mixup.mixup_alpha", "0.8", minimum=0)
    cutmix = _number(cfg, "augment.mixup.cutmix_alpha", "1.0", minimum=0)
    _number(cfg, "augment.mixup.prob", "1.0", minimum=0, maximum=1)
    _number(cfg, "augment.mixup.switch_prob", "0.5", minimum=0, maximum=1)
    _choice(cfg, "augment.mixup.mode", MIXUP_MODES)
    smoothing = _number(cfg, "augment.mixup.label_smoothing", "0.1", minimum=0, maximum=1)
    if smoothing == 1:
        raise ConfigError("augment.mixup.label_smoothing", "must be < 1: at 1 every target is uniform",
                          "augment.mixup.label_smoothing=0.1")
    if not (mixup > 0 or cutmix > 0):
        return
    batch = _value(cfg, "data.batch_size")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch % 2:
        raise ConfigError("data.batch_size", f"is {batch}, but mixup/cutmix mix each image with another of its "
                          "batch and need an even batch size", f"data.batch_size={batch + 1}")
    # model.label_smoothing (hymenoptera's 0.1) is not applied on top: the mixed targets carry their own smoothing


def _check_data(cfg: DictConfig) -> None:
    from visiontrain.data.builtin import BUILTIN_DATASETS, is_materialised
    from visiontrain.data.duplicates import ACROSS_CLASSES_POLICIES, WITHIN_CLASS_POLICIES
    from visiontrain.data.inventory import FORMATS

    _number(cfg, "data.batch_size", "32", integer=True, minimum=1)
    _number(cfg, "data.val_fraction", "0.2", minimum=0, exclusive=True, maximum=0.9)
    workers = _value(cfg, "data.num_workers")
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError("data.num_workers", f"must be 'auto' or an integer >= 0, got {workers!r}", "data.num_workers=auto")
    _choice(cfg, "data.balance", ("none", "loss_weights", "sampler"))
    _choice(cfg, "data.format", FORMATS)
    _choice(cfg, "data.duplicates.across_classes", ACROSS_CLASSES_POLICIES)
    _choice(cfg, "data.duplicates.within_class", WITHIN_CLASS_POLICIES)
    _boolean(cfg, "data.allow_outside_root")
    if OmegaConf.select(cfg, "data.pin_memory") != "auto":
        _boolean(cfg, "data.pin_memory")
    builtin = _value(cfg, "data.builtin")
    if builtin is not None:
        _choice(cfg, "data.builtin", BUILTIN_DATASETS)
        root = Path(str(_value(cfg, "data.root"))).expanduser()
        if root.exists() and not is_materialised(root) and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError("data.root", f"{root} is an existing folder, but data.builtin={builtin} would write "
                              "the built-in dataset there", "to train on your folder add data=image_folder "
                              "(or data.builtin=null); for the built-in data leave data.root unset")
        return
    root = _value(cfg, "data.root")
    path = Path(str(root)).expanduser()
    if not path.exists():
        raise ConfigError("data.root", f"{path} does not exist",
                          "data.root=/path/to/images: a folder with train/ and val/, a folder of class folders, "
                          "or a CSV manifest (path,label)")
    if path.is_file() and path.suffix.lower() != ".csv":
        raise ConfigError("data.root", f"{path} is a file but not a .csv manifest", "data.root=/path/to/images")


def _check_opset(cfg: DictConfig) -> None:
    """``export.opset`` within what torch's ONNX exporter writes (both exports use the TorchScript one)."""
    import torch
    from torch.onnx import _constants

    highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    lowest = max(13, _constants.ONNX_MIN_OPSET)  # int8 quantization and the exported ops need 13
    opset = _value(cfg, "export.opset")
    if isinstance(opset, bool) or not isinstance(opset, int) or not lowest <= opset <= highest:
        exporter = f"torch {torch.__version__.split('+')[0]}"
        raise ConfigError("export.opset", f"must be an integer from {lowest} to {highest} (what {exporter} exports), "
                          f"got {opset!r}", f"export.opset={min(17, highest)}")


def _lightning_precisions() -> tuple[Any, ...]:
    """Every ``precision`` value Lightning's Trainer accepts (``32-true``, ``bf16-mixed``, 16, "bf16", ...)."""
    import typing

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    def flatten(kind: Any) -> list[Any]:
        return [v for arg in typing.get_args(kind) for v in (flatten(arg) if typing.get_args(arg) else [arg])]

    return tuple(flatten(_PRECISION_INPUT))


def _check_precision(cfg: DictConfig) -> None:
    precision = _value(cfg, "trainer.precision")
    allowed = _lightning_precisions()
    if isinstance(precision, bool) or precision not in allowed:
        names = ", ".join(str(v) for v in allowed if isinstance(v, str) and "-" in v)
        raise ConfigError("trainer.precision", f"must be one of {names} (or 16, 32, 64, bf16), got {precision!r}",
                          "trainer.precision=32-true (bf16-mixed or 16-mixed on a GPU)")


def _check_devices(cfg: DictConfig) -> None:
    """What Lightning takes for ``devices``: a count (-1: all), ``auto``, a list of ids or ``"0,1"``."""
    devices = _value(cfg, "trainer.devices")
    text = devices.strip() if isinstance(devices, str) else None
    if isinstance(devices, bool):
        valid = False
    elif isinstance(devices, int):
        valid = devices >= 1 or devices == -1
    elif text is not None:
        ids = [part.strip() for part in text.split(",") if part.strip()]
        valid = text in ("auto", "-1") or (bool(ids) and all(part.isdigit() for part in ids)
                                           and ("," in text or int(ids[0]) >= 1))
    elif OmegaConf.is_list(devices):
        valid = len(devices) > 0 and all(type(d) is int and d >= 0 for d in devices)  # bool is not an id
    else:
        valid = False
    if not valid:
        raise ConfigError("trainer.devices", f"must be a number of devices (>= 1, or -1 for all), auto, a list of "
                          f"device ids or a string like \"0,1\"; got {devices!r}", "trainer.devices=1 (or auto)")


def _check_tracking(cfg: DictConfig) -> None:
    """Logger and callback settings that Lightning and wandb would only reject once training has started."""
    if OmegaConf.select(cfg, "logger.wandb") is not None:
        from visiontrain.tracking.wandb_run import WANDB_MODES

        _choice(cfg, "logger.wandb.mode", WANDB_MODES)
    if OmegaConf.select(cfg, "callbacks.early_stopping") is not None:
        _number(cfg, "callbacks.early_stopping.patience", "10", integer=True, minimum=0)
    if OmegaConf.select(cfg, "callbacks.model_checkpoint") is not None:
        _number(cfg, "callbacks.model_checkpoint.save_top_k", "1", integer=True, minimum=-1)


def _check_no_literal_secrets(cfg: DictConfig, prefix: str = "") -> None:
    """A password typed into a config file: stop before it is used (the run dir is then removed, with the copy
    Hydra wrote of it). An ``${oc.env:...}`` interpolation is the way to give one."""
    from visiontrain.redaction import has_secret

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")
        elif isinstance(node, str) and "${" not in node and has_secret(node):
            raise ConfigError(path, "holds a URL with a password or token, which would be stored with the run",
                              f"export DB_URL='...' and set {path}='${{oc.env:DB_URL}}'"
                              + (" (or data.source_env=DB_URL)" if path == "data.source" else ""))

    walk(OmegaConf.to_container(cfg, resolve=False), prefix)
