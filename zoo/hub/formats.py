"""The repo formats a Hub pull understands, each found by the files a repo declares — never by tensor keys.

* ``sslzoo``: an entry's folder (``manifest.json`` + our ``config.json``), pushed by :func:`zoo.hub.push`
  or uploaded as it is (``hf upload``, ``git push``): the manifest alone says which files make the entry;
* ``open_clip``: ``open_clip_config.json`` + ``open_clip_model.safetensors`` (image and text towers);
* ``timm``: timm's ``config.json`` (``architecture``, ``pretrained_cfg``, ``model_args``) + ``model.safetensors``;
* ``transformers``: a transformers ``config.json`` (``model_type``) + ``model.safetensors`` of a model type
  sslzoo converts to a timm twin (I-JEPA's ``IJepaModel``, :mod:`zoo.hub.ijepa`); other model types are
  refused with that list.

Formats are registered in order of preference by :func:`register_format`; a repo offering several
(timm's CLIP repos carry both timm and open_clip files) gets the first unless the caller names one.
Each format plans the files to download (safe types only: a format whose weights exist only as a
pickle raises :class:`UnsafeWeightsError` before anything big is downloaded) and turns the download
into a registry entry with the embedding contract of the source: pooling, normalisation and
preprocessing from the repo's own config, licence from its config or model card (or the catalogue), and
the read-out of the method's own evaluation where the catalogue records one (DINOv2's class token + patch
mean) in place of the repo's default.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from zoo.config import EncoderConfig, HubSource, PreprocessConfig
from zoo.errors import ConfigError, ManifestError, UnsafeWeightsError
from zoo.hub.catalogue import CatalogueEntry
from zoo.manifest import MANIFEST, verify_manifest
from zoo.naming import NameRegistry
from zoo.pickles import CONVERT_HINT, is_pickle
from zoo.registry import CARD, CONFIG, Entry, Registry, config_bytes, read_config

log = logging.getLogger(__name__)
JsonReader = Callable[[str], Any]
#: NumPy arrays (a shipped entry's ``golden.npz``): safe only as long as nothing unpickles them, see check_arrays.
ARRAY_SUFFIXES = (".npz",)
#: File types a pull may download: weights as safetensors, ONNX graphs, plain arrays, inert text or images.
SAFE_SUFFIXES = (".safetensors", ".json", ".onnx", ".md", ".txt", ".png", ".jpg", ".jpeg", ".svg", ".yaml", ".yml",
                 *ARRAY_SUFFIXES)
_TIMM_POOL_TO_CONTRACT = {"token": "cls", "avg": "mean", "map": "map"}
#: transformers model types a pull converts (each by its module in zoo.hub), and the weights file they need.
TRANSFORMERS_MODEL_TYPES = ("ijepa",)
TRANSFORMERS_WEIGHTS = "model.safetensors"
TRANSFORMERS_PREPROCESSOR = "preprocessor_config.json"  # optional: the eval preprocessing, when the repo has it


@dataclass(frozen=True)
class Context:
    """What a format needs to register a download: where it came from and where it lies."""

    repo_id: str
    commit: str
    folder: Path
    hub_info: HubSource
    known: CatalogueEntry | None = None

    @property
    def source(self) -> str:
        return f"hf-hub:{self.repo_id}@{self.commit}"


class HubFormat(Protocol):
    """A repo layout: which files to fetch, and how they become an entry."""

    name: str

    def plan(self, repo_id: str, files: set[str], read_json: JsonReader) -> list[str] | None:
        """The files to download, or None when the repo is not in this format."""

    def register(self, context: Context, name: str, registry: Registry) -> Entry:
        """Check the downloaded files and save them as a registry entry."""


FORMATS: NameRegistry[HubFormat] = NameRegistry("Hub format")


def register_format(cls: type[Any]) -> type[Any]:
    """Register a format class under its ``name``; earlier registrations are preferred."""
    FORMATS.add(cls.name, cls(), origin=cls)
    return cls


def formats() -> list[str]:
    """Known format names in order of preference."""
    return [name for name, _ in FORMATS.in_registration_order()]


def pickles_refusal(repo_id: str, pickles: list[str], wanted: str) -> UnsafeWeightsError:
    """The error for a repo whose weights exist only as pickles."""
    return UnsafeWeightsError(
        f"{repo_id} offers its weights only as pickle ({', '.join(sorted(pickles))}), not {wanted}. sslzoo "
        "downloads and loads safetensors only, because unpickling runs arbitrary code. Convert it once where you "
        f"trust it ({CONVERT_HINT}) and push that, or ask the repo's maintainers for safetensors weights."
    )


def choose(files: set[str], read_json: JsonReader, requested: str | None, repo_id: str) -> tuple[HubFormat, list[str]]:
    """The format a repo is in and the files to download for it; clear errors for everything else."""
    if requested is not None:
        FORMATS.get(requested)  # an unknown name is an error listing the known ones
    for name, fmt in FORMATS.in_registration_order():
        if requested not in (None, name):
            continue
        planned = fmt.plan(repo_id, files, read_json)
        if planned is not None:
            return fmt, planned + ([CARD] if CARD in files and CARD not in planned else [])
    pickles = [f for f in files if is_pickle(f)]
    if pickles and not any(f.endswith(".safetensors") for f in files):
        raise pickles_refusal(repo_id, pickles, "safetensors")
    if requested is not None:
        raise ConfigError(f"{repo_id} is not a {requested} repo; its files: {sorted(files)[:12]}")
    if CONFIG in files:
        raw = read_json(CONFIG)
        if isinstance(raw, dict) and "model_type" in raw:
            raise ConfigError(f"{repo_id} is a transformers repo (model_type {raw['model_type']!r}); sslzoo loads "
                              f"{', '.join(formats())} repos, and converts transformers repos of model type "
                              f"{', '.join(TRANSFORMERS_MODEL_TYPES)} only")
    raise ConfigError(f"{repo_id} is not a model repo sslzoo can load: it needs manifest.json (sslzoo), "
                      "open_clip_config.json + open_clip_model.safetensors (open_clip) or timm's config.json + "
                      f"model.safetensors; its files: {sorted(files)[:12]}")


def check_arrays(folder: Path, names: Iterable[str], repo_id: str) -> None:
    """Refuse any downloaded ``.npz`` that numpy cannot read without unpickling.

    NumPy stores object arrays as pickles inside the same files, and ``np.load`` unpickles them for any
    reader that passes ``allow_pickle=True``. Reading every array here with ``allow_pickle=False`` means
    a pulled entry only ever holds plain numeric arrays, whoever opens its files later and however.
    """
    for name in names:
        if not name.endswith(ARRAY_SUFFIXES):
            continue
        try:
            loaded = np.load(folder / name, allow_pickle=False)
            if not isinstance(loaded, np.ndarray):  # an archive of arrays, each read to the end
                with loaded:
                    for key in loaded.files:
                        loaded[key]  # reading each array to the end is the check
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise UnsafeWeightsError(f"{repo_id}: {name} is not a plain-array file numpy reads without "
                                     f"unpickling ({exc}); sslzoo never unpickles a download") from exc


def _card_data(folder: Path) -> dict[str, Any]:
    """The model card's front matter (licence, datasets), if the repo has one."""
    if not (folder / CARD).is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(folder / CARD).data.to_dict()
    except (ValueError, OSError) as exc:  # a broken card costs the metadata, not the pull
        log.warning("%s: unreadable model card: %s", folder / CARD, exc)
        return {}


def provenance(context: Context, declared_license: str | None) -> dict[str, str]:
    """Licence, method and data of a converted checkpoint: its own metadata first, then the catalogue's."""
    card = _card_data(context.folder)
    license_ = declared_license or card.get("license") or (context.known.license if context.known else "") or "unknown"
    datasets = card.get("datasets") or []
    data = datasets[0] if datasets else (context.known.data if context.known else "")
    if context.known and context.known.license.lower() != str(license_).lower():
        log.warning("%s: the repo declares licence %s, the catalogue %s; using the repo's", context.repo_id,
                    license_, context.known.license)
    return {"license": str(license_).lower(), "data": str(data),
            "method": context.known.method if context.known else "pretrained"}


def with_hub(config: EncoderConfig, context: Context) -> EncoderConfig:
    """The config with the Hub provenance (repo, revision, commit, format, catalogue name) in ``hub``."""
    catalogue = context.known.name if context.known is not None else ""
    return config.replace(hub=replace(context.hub_info, catalogue=catalogue))


# -- sslzoo ----------------------------------------------------------------------------------------
@register_format
class SslzooFormat:
    """An sslzoo entry's folder, however it was uploaded: every file in its manifest, verified against it."""

    name = "sslzoo"

    def plan(self, repo_id: str, files: set[str], read_json: JsonReader) -> list[str] | None:
        if MANIFEST not in files or CONFIG not in files:
            return None
        manifest = read_json(MANIFEST)
        listed = sorted(manifest.get("files", {})) if isinstance(manifest, dict) else []
        if not listed:
            raise ManifestError(f"{repo_id}: {MANIFEST} lists no files")
        unsafe = [n for n in listed if is_pickle(n)]
        if unsafe:
            raise UnsafeWeightsError(f"{repo_id}: its manifest lists pickle files {unsafe}; sslzoo never downloads "
                                     "pickles")
        other = [n for n in listed if not n.endswith(SAFE_SUFFIXES)]
        if other:
            raise ConfigError(f"{repo_id}: the manifest lists files of types sslzoo does not download: {other}")
        missing = [n for n in listed if n not in files]
        if missing:
            raise ManifestError(f"{repo_id}: the manifest lists {missing}, which the repo does not have")
        return [*listed, MANIFEST]

    def register(self, context: Context, name: str, registry: Registry) -> Entry:
        manifest = verify_manifest(context.folder)
        check_arrays(context.folder, manifest["files"], context.repo_id)
        config = with_hub(read_config(context.folder), context)
        files = {n: (context.folder / n).read_bytes() for n in manifest["files"] if n != CONFIG}
        files[CONFIG] = config_bytes(config)
        entry = registry.save_files(name, files)
        if entry.embedding_space != manifest["embedding_space"]:
            raise ManifestError(f"{entry.ref}: embedding space {entry.embedding_space} differs from the pushed "
                                f"{manifest['embedding_space']}")
        return entry


# -- open_clip -------------------------------------------------------------------------------------
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


@register_format
class OpenClipFormat:
    """An open_clip repo: image and text towers converted into a :class:`zoo.clip.ClipModel`."""

    name = "open_clip"

    def plan(self, repo_id: str, files: set[str], read_json: JsonReader) -> list[str] | None:
        if OPEN_CLIP_CONFIG not in files:
            return None
        if OPEN_CLIP_WEIGHTS not in files:
            pickles = [f for f in files if f.startswith("open_clip_") and is_pickle(f)]
            if pickles:
                raise pickles_refusal(repo_id, pickles, OPEN_CLIP_WEIGHTS)
            return None
        return [OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS]

    def register(self, context: Context, name: str, registry: Registry) -> Entry:
        from zoo.torch_backend import model_files

        try:
            from zoo.hub import openclip
        except ImportError as exc:
            raise ConfigError(f"{context.repo_id}: open_clip repos are converted by zoo.hub.openclip, which this "
                              "installation does not have") from exc
        raw = json.loads((context.folder / OPEN_CLIP_CONFIG).read_text())
        model_cfg = raw.get("model_cfg") if isinstance(raw, dict) else None
        if not isinstance(model_cfg, dict):
            raise ConfigError(f"{context.repo_id}: {OPEN_CLIP_CONFIG} has no model_cfg")
        resize_mode = (raw.get("preprocess_cfg") or {}).get("resize_mode", "shortest")
        if resize_mode != "shortest":
            raise ConfigError(f"{context.repo_id}: open_clip resize_mode {resize_mode!r} is not supported "
                              "(only 'shortest' then centre crop)")
        model = open_clip_model(openclip, context.folder)
        facts = provenance(context, None)
        clip = openclip.convert_open_clip(model, context.repo_id, model_cfg, source=context.source,
                                          license=facts["license"])
        config = with_hub(clip.config.replace(data=facts["data"]), context)
        return registry.save_entry(name, config, model_files(clip))


def open_clip_model(openclip: Any, folder: Path) -> Any:
    """open_clip's own model for a repo's ``open_clip_config.json``, loaded strictly from the safetensors.

    open_clip builds the architecture and preprocessing from the config alone (``local-dir:`` on a folder
    holding only the config, so it never looks for, let alone unpickles, a weights file); the weights are
    then loaded here, strictly, from ``open_clip_model.safetensors``.
    """
    import shutil
    import tempfile

    from safetensors.torch import load_file

    from zoo.encoders import load_strict

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(folder / OPEN_CLIP_CONFIG, Path(tmp) / OPEN_CLIP_CONFIG)
        model = openclip._open_clip().create_model(f"local-dir:{tmp}")
    state = {k: v for k, v in load_file(str(folder / OPEN_CLIP_WEIGHTS)).items() if k != "attn_mask"}
    load_strict(model, state, OPEN_CLIP_WEIGHTS)
    return model.eval()


# -- timm ------------------------------------------------------------------------------------------
TIMM_WEIGHTS = "model.safetensors"


def is_timm_config(raw: Any) -> bool:
    """Whether a ``config.json`` is timm's: ``architecture`` (singular), where transformers has ``model_type``."""
    return isinstance(raw, dict) and isinstance(raw.get("architecture"), str)


@register_format
class TimmFormat:
    """A timm repo: ``config.json`` (architecture, pretrained_cfg, model_args) + ``model.safetensors``."""

    name = "timm"

    def plan(self, repo_id: str, files: set[str], read_json: JsonReader) -> list[str] | None:
        if CONFIG not in files or not is_timm_config(read_json(CONFIG)):
            return None
        if TIMM_WEIGHTS not in files:
            pickles = [f for f in files if is_pickle(f)]
            if pickles:
                raise pickles_refusal(repo_id, pickles, TIMM_WEIGHTS)
            raise ConfigError(f"{repo_id} is a timm repo without {TIMM_WEIGHTS}")
        return [CONFIG, TIMM_WEIGHTS]

    def register(self, context: Context, name: str, registry: Registry) -> Entry:
        from safetensors.torch import load_file

        from zoo.encoders import ImageEncoder

        raw = json.loads((context.folder / CONFIG).read_text())
        config, backbone = timm_config(raw, context)
        encoder = ImageEncoder(config, backbone)
        encoder.load_tensor_files({TIMM_WEIGHTS: load_file(str(context.folder / TIMM_WEIGHTS))})
        files = {TIMM_WEIGHTS: (context.folder / TIMM_WEIGHTS).read_bytes()}
        return registry.save_entry(name, config, files)


def timm_preprocess(pretrained_cfg: dict[str, Any]) -> PreprocessConfig:
    """The eval preprocessing of a timm ``pretrained_cfg`` (input size, interpolation, crop_pct, mean, std)."""
    if pretrained_cfg.get("crop_mode", "center") != "center":
        raise ConfigError(f"timm crop_mode {pretrained_cfg['crop_mode']!r} is not supported (only 'center')")
    defaults = PreprocessConfig()
    return PreprocessConfig(
        input_size=tuple(pretrained_cfg.get("input_size", defaults.input_size)),  # type: ignore[arg-type]
        interpolation=str(pretrained_cfg.get("interpolation") or defaults.interpolation),
        crop_pct=float(pretrained_cfg.get("crop_pct") or defaults.crop_pct),
        mean=tuple(float(m) for m in pretrained_cfg.get("mean", defaults.mean)),
        std=tuple(float(s) for s in pretrained_cfg.get("std", defaults.std)),
    )


def _timm_pool(backbone: Any) -> str | None:
    pool = getattr(backbone, "global_pool", None)
    return str(getattr(pool, "pool_type", pool)) if pool is not None else None


def timm_config(raw: dict[str, Any], context: Context) -> tuple[EncoderConfig, Any]:
    """An :class:`EncoderConfig` for a timm ``config.json``, and the backbone it builds.

    The model is built exactly as timm builds it from the same file (``model_args`` and
    ``num_classes``), so its forward equals timm's; the pooling timm uses is recorded in ``arch_args``
    so the entry never depends on timm's defaults. A catalogue entry's ``pooling`` (the method's own
    read-out) replaces the repo's: the same network, its tokens read out another way.
    """
    from zoo.encoders import _is_transformer, create_timm, install_pooling, output_width, timm_pool_arg

    pretrained_cfg = raw.get("pretrained_cfg", raw)
    arch = raw["architecture"]
    arch_args = dict(raw.get("model_args") or {})
    num_classes = raw.get("num_classes", pretrained_cfg.get("num_classes"))
    if num_classes is not None:
        arch_args["num_classes"] = int(num_classes)
    backbone = create_timm(arch, arch_args)
    pool = _timm_pool(backbone)
    if pool not in _TIMM_POOL_TO_CONTRACT:
        raise ConfigError(f"{context.repo_id}: timm pooling {pool!r} of {arch} has no place in the embedding "
                          f"contract (cls/mean/avg/map)")
    arch_args.setdefault("global_pool", pool)
    pooling = _TIMM_POOL_TO_CONTRACT[pool] if _is_transformer(backbone) else "avg"
    convention = context.known.pooling if context.known is not None else None
    if convention is not None and convention != pooling:
        pooling, arch_args["global_pool"] = convention, timm_pool_arg(convention)
        backbone = install_pooling(create_timm(arch, arch_args), pooling)
    preprocess = timm_preprocess(pretrained_cfg)
    facts = provenance(context, pretrained_cfg.get("license"))
    config = EncoderConfig(arch=arch, arch_args=arch_args, embed_dim=output_width(backbone, pooling, preprocess),
                           pooling=pooling, normalize=True, metric="cosine", preprocess=preprocess,
                           method=facts["method"], license=facts["license"], source=context.source,
                           data=facts["data"])
    return with_hub(config, context), backbone


# -- transformers ----------------------------------------------------------------------------------
def transformers_model_type(raw: Any) -> str | None:
    """A transformers ``config.json``'s ``model_type`` (timm's config has ``architecture`` instead)."""
    return str(raw["model_type"]) if isinstance(raw, dict) and isinstance(raw.get("model_type"), str) else None


@register_format
class TransformersFormat:
    """A transformers repo of a model type sslzoo converts to a timm twin (``ijepa``: :mod:`zoo.hub.ijepa`).

    Only the converted types are claimed; any other transformers repo falls through to :func:`choose`'s
    refusal, which names the types that convert.
    """

    name = "transformers"

    def plan(self, repo_id: str, files: set[str], read_json: JsonReader) -> list[str] | None:
        if CONFIG not in files or transformers_model_type(read_json(CONFIG)) not in TRANSFORMERS_MODEL_TYPES:
            return None
        if TRANSFORMERS_WEIGHTS not in files:
            pickles = [f for f in files if is_pickle(f)]
            if pickles:
                raise pickles_refusal(repo_id, pickles, TRANSFORMERS_WEIGHTS)
            raise ConfigError(f"{repo_id}: a transformers repo without a single {TRANSFORMERS_WEIGHTS} (sharded "
                              "checkpoints are not converted)")
        optional = [TRANSFORMERS_PREPROCESSOR] if TRANSFORMERS_PREPROCESSOR in files else []
        return [CONFIG, TRANSFORMERS_WEIGHTS, *optional]

    def register(self, context: Context, name: str, registry: Registry) -> Entry:
        from zoo.hub import ijepa
        from zoo.torch_backend import model_files

        facts = provenance(context, None)
        encoder = ijepa.convert(context.folder, source=context.source, license=facts["license"],
                                method=facts["method"] if context.known else "ijepa", data=facts["data"])
        return registry.save_entry(name, with_hub(encoder.config, context), model_files(encoder))
