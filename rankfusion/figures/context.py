"""What every figure family reads: the run cache, the output folder and the modalities analysed.

:meth:`FigureContext.open` is the one way to build a context: it opens the dataset, applies the
default-cache rule (:func:`rankfusion.runcache.default_cache_dir`), checks the anchor and chooses
the partner. The command line, the ``analysis/`` scripts and the demo all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._validation import InputError
from ..data import open_dataset
from ..profiles import Profile, get_profile
from ..runcache import RunCache, default_cache_dir, expected_complementary


@dataclass(frozen=True)
class FigureContext:
    """The figure families' shared inputs (build it with :meth:`open`).

    Attributes
    ----------
    cache : RunCache
        Trains, exports and evaluates the runs (cached by config hash, seed and dataset).
    out : Path
        Folder the figures and tables are written to.
    anchor : str
        The reference modality (RGB in the paper).
    partner : str
        The modality fused with the anchor for spectra / noise / exchange / angles / ablations:
        the most complementary one by construction on synthetic data, else the first other one.
    modalities : tuple of str
        Every modality of the dataset.
    formats : tuple of str
        Image formats written for each figure.
    """

    cache: RunCache
    out: Path
    anchor: str
    partner: str
    modalities: tuple
    formats: tuple = ("png", "pdf")

    @classmethod
    def open(cls, data, *, out, cache_dir=None, profile: str | Profile = "full", device: str = "cpu",
             progress: bool = True, anchor: str = "rgb", partner: str | None = None,
             formats=("png", "pdf")) -> "FigureContext":
        """Open the dataset ``data`` and its run cache; check ``anchor`` and choose ``partner``.

        Parameters
        ----------
        data : path-like
            The dataset (standard layout).
        out : path-like
            Output folder of the figures and tables (created when a family writes).
        cache_dir : path-like, optional
            Run cache; default ``<DATA>/../rankfusion-cache`` (:func:`rankfusion.runcache.default_cache_dir`).
        profile : str or Profile
            Size of the runs: a profile name (``quick``, ``full``) or a :class:`rankfusion.profiles.Profile`.
        device : str
            Torch device of training, export and evaluation.
        progress : bool
            Show progress bars.
        anchor : str
            Reference modality; must be a modality of the dataset.
        partner : str, optional
            Modality fused with the anchor; default the most complementary by construction, else
            the first other modality.
        formats : tuple of str
            Image formats of each figure.
        """
        prof = get_profile(profile) if isinstance(profile, str) else profile
        cache_dir = default_cache_dir(data) if cache_dir is None else Path(cache_dir)
        cache = RunCache(data, cache_dir, prof, device=device, progress=progress)
        root = cache.data_root
        modalities = tuple(open_dataset(root).modalities)
        if anchor not in modalities:
            raise InputError(f"anchor {anchor!r} is not a modality of {str(root)!r}; modalities: {list(modalities)}")
        others = [m for m in modalities if m != anchor]
        if not others:
            raise InputError(f"dataset {str(root)!r} has only the anchor {anchor!r}; "
                             "the analyses need a second modality")
        if partner is None:
            exp = expected_complementary(root)
            partner = exp if exp in others else others[0]
        elif partner not in others:
            raise InputError(f"partner {partner!r} is not a modality of {str(root)!r} other than the anchor; "
                             f"choose from {others}")
        return cls(cache, Path(out), anchor, partner, modalities, tuple(formats))

    @property
    def profile(self) -> Profile:
        """The size of the runs (:class:`rankfusion.profiles.Profile`)."""
        return self.cache.profile

    @property
    def seeds(self) -> tuple:
        """The training seeds of every configuration."""
        return tuple(self.cache.profile.seeds)

    @property
    def obs_ratios(self) -> tuple:
        """The observation ratios at which features are exported."""
        return tuple(self.cache.profile.obs_ratios)

    @property
    def obs(self) -> float:
        """The observation ratio used by single-ratio figures (0.3 when analysed, else the first)."""
        return 0.3 if 0.3 in self.obs_ratios else self.obs_ratios[0]

    @property
    def pair(self) -> list[str]:
        """``[anchor, partner]``."""
        return [self.anchor, self.partner]

    @property
    def candidates(self) -> list[str]:
        """Every modality but the anchor."""
        return [m for m in self.modalities if m != self.anchor]

    @property
    def data_root(self) -> Path:
        """The dataset folder (absolute)."""
        return self.cache.data_root
