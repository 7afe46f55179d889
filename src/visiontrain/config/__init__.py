"""Configuration: locating conf/, and checking a composed config before any work starts."""

from pathlib import Path


def config_dir() -> Path:
    """conf/ inside an installed wheel, or at the repository root for an editable install."""
    packaged = Path(__file__).resolve().parent.parent / "conf"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "conf"


def _register_resolvers() -> None:
    """``${run_name:...}`` (conf/train.yaml's task_name) resolves wherever conf/ is composed or read back."""
    from visiontrain.config.run_name import register

    register()


_register_resolvers()
