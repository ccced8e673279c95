"""Reading RGB and depth frames from image files (8- or 16-bit PNG, JPEG, OpenCV XML matrices).

A video is a folder of frame files of one kind, ordered by the numbers in their names
(``depthImg190.xml`` before ``depthImg1000.xml``). :func:`read_frame` returns

* ``(H, W, 3)`` uint8 for colour images (RGBA and palette images are converted to RGB);
* ``(H, W)`` for single-channel images: uint8 grey, uint16 depth (NTU's ``MDepth-*.png``,
  millimetres), or the element type of an OpenCV XML matrix (UTKinect's ``depthImg<N>.xml``).

OpenCV XML (``cv::FileStorage``): ``<opencv_storage>`` holding one element with
``type_id="opencv-matrix"`` and children ``<rows>``, ``<cols>``, ``<dt>`` (element type code:
``u`` uint8, ``c`` int8, ``w`` uint16, ``s`` int16, ``i`` int32, ``f`` float32, ``d`` float64)
and ``<data>`` (whitespace-separated values, row by row). OpenCV's image node
(``type_id="opencv-image"``: ``<width>``, ``<height>``, optional ``<origin>``, ``<dt>``,
``<data>``), which the official R3D code reads for UTKinect's depth, is read as well: rows are
flipped when ``<origin>`` is ``bottom-left``; without ``<dt>`` the values stay float64.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .._validation import InputError

#: Frame file kinds by suffix.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
XML_SUFFIX = ".xml"

#: OpenCV ``dt`` element codes.
OPENCV_DTYPES = {"u": np.uint8, "c": np.int8, "w": np.uint16, "s": np.int16, "i": np.int32, "f": np.float32,
                 "d": np.float64}


def _natural_key(path: Path):
    return [int(p) if p.isascii() and p.isdigit() else p for p in re.split(r"([0-9]+)", path.name)]


def list_frames(folder) -> list[Path]:
    """Frame files of one video folder, ordered by the numbers in their names.

    Raises
    ------
    InputError
        If the folder holds no frame file, or mixes XML matrices with images.
    """
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, XML_SUFFIX)]
    if not files:
        raise InputError(f"video folder {str(folder)!r} holds no .png, .jpg or .xml frame")
    kinds = {p.suffix.lower() == XML_SUFFIX for p in files}
    if len(kinds) > 1:
        raise InputError(f"video folder {str(folder)!r} mixes .xml matrices with images; keep one kind per video")
    return sorted(files, key=_natural_key)


def read_opencv_xml(path) -> np.ndarray:
    """Read the single-channel matrix of an OpenCV FileStorage XML file, ``(rows, cols)``."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{str(path)!r} line {exc.position[0]}: not well-formed XML ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    node = next(iter(root), None) if root.tag == "opencv_storage" else None
    if node is None:
        raise InputError(f"{str(path)!r}: expected <opencv_storage> holding one matrix element, got <{root.tag}>")

    def child(tag):
        el = node.find(tag)
        if el is None or el.text is None or not el.text.strip():
            raise InputError(f"{str(path)!r}: matrix <{node.tag}> has no <{tag}> value")
        return el.text.strip()

    if node.find("rows") is not None:
        rows, cols = child("rows"), child("cols")
    else:
        rows, cols = child("height"), child("width")
    dtype = None
    if node.find("dt") is not None:
        dt = child("dt")
        m = re.fullmatch(r"([0-9]*)([ucwsifd])", dt)
        if not m or m.group(1) not in ("", "1"):
            raise InputError(f"{str(path)!r}: <dt>{dt}</dt> is not a single-channel OpenCV element type")
        dtype = OPENCV_DTYPES[m.group(2)]
    if not (re.fullmatch("[0-9]+", rows) and re.fullmatch("[0-9]+", cols)) or int(rows) == 0 or int(cols) == 0:
        raise InputError(f"{str(path)!r}: matrix size {rows} x {cols} is not two positive integers")
    values = child("data").split()
    n = int(rows) * int(cols)
    if len(values) != n:
        raise InputError(f"{str(path)!r}: <data> holds {len(values)} values, {rows} x {cols} = {n} expected")
    try:
        x = np.array(values, dtype=np.float64)
    except ValueError:
        raise InputError(f"{str(path)!r}: <data> holds a value that is not a number") from None
    if not np.isfinite(x).all():
        raise InputError(f"{str(path)!r}: <data> holds a non-finite value")
    x = x.reshape(int(rows), int(cols))
    origin = node.find("origin")
    if origin is not None and (origin.text or "").strip() == "bottom-left":
        x = x[::-1]  # an image stored from its bottom row up
    return x.astype(dtype) if dtype is not None else x


def read_image(path) -> np.ndarray:
    """Read a PNG or JPEG frame with Pillow: ``(H, W, 3)`` uint8 colour or ``(H, W)`` grey / depth."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "L", "I;16", "I;16B", "I;16L", "I", "F"):
                x = np.array(im)
            else:
                x = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read frame {str(path)!r}: {exc}") from None
    if x.dtype.byteorder == ">":
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def read_frame(path) -> np.ndarray:
    """One frame as an array (see the module docstring for shapes and types)."""
    path = Path(path)
    return read_opencv_xml(path) if path.suffix.lower() == XML_SUFFIX else read_image(path)
