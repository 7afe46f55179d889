"""The fixed sets of values config keys accept, in one torch-free place.

The checks read them before anything heavy is imported, and the code that acts on a value imports the same
tuple from here, so a new mode is added once. The first value of each is the one a fix suggests.
"""

from visiontrain.core.names import TASK_NAMES  # noqa: F401  (the tasks' names live with the table of tasks)
from visiontrain.core.providers import PROVIDER_CHOICES  # noqa: F401  (with the code that picks the providers)

# what an image run may monitor, and which of all monitorable metrics are minimised
MONITORABLE = ("val/acc", "val/loss", "val/f1_macro", "val/acc_top5")
MINIMISED = ("val/loss", "val/mse", "val/rmse", "val/mae")
CLASSIFICATION_MONITORS = ("val/roc_auc", "val/pr_auc", "val/f1", "val/acc", "val/precision", "val/recall",
                           "val/loss")
REGRESSION_MONITORS = ("val/rmse", "val/mse", "val/mae", "val/r2", "val/loss")

IMAGE_FORMATS = ("auto", "imagefolder", "class_tree", "manifest")
IMAGE_BALANCE = ("none", "loss_weights", "sampler")
BUILTIN_DATASETS = ("digits",)
ACROSS_CLASSES_POLICIES = ("reject", "warn", "allow")
WITHIN_CLASS_POLICIES = ("warn", "reject", "allow")
MIXUP_MODES = ("batch", "pair", "elem")  # one mix per batch | per pair of images | per image
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")  # model.input.interpolation: core.image_preprocess's
BN_STATS = ("frozen", "train")

TABLE_FORMATS = ("csv", "json", "jsonl", "parquet", "sql")
TABLE_BALANCE = ("none", "loss_weights")
REMOTE_SCHEMES = {"kafka://": "kafka", "http://": "http", "https://": "http"}  # data.source read by its scheme
HTTP_PAGINATION = ("auto", "link", "next", "page", "none")  # auto: a Link header, a next field, a page parameter
HTTP_ROWS_KEYS = ("data", "results", "items", "rows", "records")  # data.http.rows_key=auto looks under these
BUILTIN_TABLES = ("churn", "diabetes")
TABLE_TASK_TYPES = ("classification", "regression")
THRESHOLD_METRICS = ("f1", "acc", "precision", "recall", "balanced_acc")
MISSING_VALUE_RULES = ("impute", "reject")  # data.cleaning.missing_numeric / missing_category
UNKNOWN_CATEGORY_RULES = ("reject", "missing")  # data.cleaning.unknown_category
OUTLIER_RULES = ("clip", "flag", "reject")  # data.cleaning.outliers
LEAKAGE_RULES = ("drop", "keep")  # data.inference.leakage
NUMERIC_IMPUTERS = ("median", "mean")  # features.impute_numeric
CATEGORY_IMPUTERS = ("most_frequent", "constant")  # features.impute_category
TABULAR_MODELS = ("mlp", "logistic_regression", "gradient_boosting", "hist_gradient_boosting")  # conf/model/*.yaml

EXPORTERS = ("torchscript", "dynamo")  # export.exporter: torch's legacy ONNX exporter | its torch.export-based one
COMPILE_MODES = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
WANDB_MODES = ("auto", "online", "offline", "disabled")
TTA_MODES = ("none", "hflip")  # none: the image as is | hflip: the image and its horizontal mirror
LR_FIND_MODES = ("exponential", "linear")
LR_FIND_MIN_POINTS = 20  # Lightning's suggestion skips the first 10 and the last point of the curve

PREDICTION_OUTPUTS = (".csv", ".json", ".jsonl")  # `visiontrain predict output=`: the format from the extension
SERVE_LOG_LEVELS = ("info", "warning", "error", "critical", "debug", "trace")  # uvicorn's log levels
RETRAIN_PROMOTE_TO = ("candidate", "production", "none")  # `visiontrain retrain`: the alias moved on promotion
