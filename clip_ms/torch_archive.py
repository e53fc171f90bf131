"""Read PyTorch checkpoint files without importing torch.

Three on-disk formats are understood:

* the ``torch.save`` zip format (PyTorch >= 1.6): one top-level folder holding ``data.pkl`` (a pickle whose tensors
  point, through persistent ids, at raw storages stored as ``data/<key>``), plus ``byteorder``/``version`` records;
* the legacy ``torch.save`` stream (``_use_new_zipfile_serialization=False``, used by many older ``.pth`` files such as
  timm's): magic number, protocol version and system info pickles, the object pickle, the list of storage keys, then
  each storage's raw bytes prefixed by its element count;
* TorchScript archives written by ``torch.jit.save`` (OpenAI's ``ViT-B-32.pt``): the same zip layout, but ``data.pkl``
  holds ``__torch__.*`` module objects; the ``code/`` folder declares which attributes are parameters and buffers, which
  is how the ``state_dict`` is recovered.

Tensors come back as ``numpy.ndarray`` (C-contiguous copies). Only a fixed set of harmless globals is ever resolved;
any other class named in a pickle becomes an inert :class:`UnresolvedObject` that records its arguments and state, so
loading a file never imports or runs code named by the file.

The product only reads such files (official lang-seg, OpenAI CLIP and timm weights). Tests make checkpoints in these
formats with ``tests/fixtures/torch_writer.py``, which builds on this module's :class:`TorchScriptObject` and
:data:`STORAGE_DTYPES`.
"""
import io
import os
import pickle
import re
import struct
import sys
import zipfile
from collections import OrderedDict
from zlib import error as zlib_error  # raised by damaged compressed records written by other tools

import numpy as np

__all__ = [
    "torch_file_format",
    "TorchArchiveError",
    "UnresolvedObject",
    "TorchScriptObject",
    "load_torch_file",
    "find_state_dict",
    "torchscript_state_dict",
    "STORAGE_DTYPES",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy dtype of one element. BFloat16 has no numpy dtype: it is read as uint16 bit
# patterns and widened to float32 (exact, since bfloat16 is the top half of a float32).
STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype("uint16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
    "ComplexFloatStorage": np.dtype("complex64"),
    "ComplexDoubleStorage": np.dtype("complex128"),
    "UntypedStorage": np.dtype("uint8"),
}
_TORCH_DTYPE_NAMES = {
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "float", "double", "half", "long", "int", "short",
}


class TorchArchiveError(ValueError):
    """A checkpoint file cannot be read; the message names the file and what is wrong."""


class UnresolvedObject(dict):
    """Inert stand-in for a class named in a pickle that this reader does not resolve.

    It never runs code of the named class: it only records the constructor arguments (``args``) and the pickled
    state (``state``; a dict state is also copied into the instance attributes). It is a ``dict`` so that pickled
    dict subclasses (e.g. Lightning's ``AttributeDict`` in ``hyper_parameters``) keep their items and can be read
    like the dict they were; items of list subclasses go to ``list_items``.
    """

    qualified_name = "?"

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        self.state = state

    def append(self, value):
        """Record an item of a pickled list subclass (in ``list_items``)."""
        self.__dict__.setdefault("list_items", []).append(value)

    def extend(self, values):
        """Record items of a pickled list subclass (in ``list_items``)."""
        for value in values:
            self.append(value)

    __hash__ = object.__hash__  # usable as a dict key, like most pickled objects

    def __eq__(self, other):
        return self is other

    def __repr__(self):
        return "<unresolved %s>" % self.qualified_name


class TorchScriptObject(UnresolvedObject):
    """A ``__torch__.*`` object (a scripted module) from a TorchScript archive; attributes are its pickled state."""


class _TorchStorageType:
    """Marker for a ``torch.<X>Storage`` class named in a pickle (only its element dtype matters here)."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _TorchDtype(str):
    """A ``torch.<dtype>`` object named in a pickle, kept as its name (e.g. ``'float32'``)."""


class _Storage:
    """A flat storage: ``array`` is a 1-D numpy array of its elements (``None`` while not yet read)."""

    def __init__(self, storage_type, array):
        self.storage_type = storage_type
        self.array = array


def _widen_bfloat16(bits):
    """uint16 bfloat16 bit patterns -> float32 values (same shape)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Tensor view of ``storage`` (offset/size/stride in elements) as a contiguous numpy copy."""
    if storage.array is None:  # first pass over a legacy file: storages are not read yet
        return None
    flat = storage.array
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    count = int(np.prod(size)) if size else 1
    if count == 0:
        out = np.empty(size, dtype=flat.dtype)
    else:
        last = int(storage_offset) + sum((n - 1) * s for n, s in zip(size, stride))
        if storage_offset < 0 or last >= flat.size:
            raise TorchArchiveError(
                "tensor (offset %d, size %s, stride %s) reaches past its storage of %d elements"
                % (storage_offset, size, stride, flat.size))
        base = flat[int(storage_offset):]
        item = flat.dtype.itemsize
        out = np.lib.stride_tricks.as_strided(base, shape=size, strides=tuple(s * item for s in stride)).copy()
    if storage.storage_type.name == "BFloat16Storage":
        out = _widen_bfloat16(out)
    return out  # a fresh C-contiguous copy (np.ascontiguousarray would turn a 0-d tensor into shape (1,))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    """A ``torch.nn.Parameter`` is just its data here."""
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    """Tensor subclasses (e.g. Parameter wrapped this way) are rebuilt as the plain tensor."""
    return func(*args)


def _rebuild_device_tensor_from_numpy(data, dtype, device, requires_grad):
    """Tensors pickled through numpy (some non-CPU tensors) are already numpy arrays."""
    return np.asarray(data)


def _safe_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` restricted to the classes this module hands out."""
    if isinstance(cls, type) and issubclass(cls, UnresolvedObject):
        obj = cls.__new__(cls)
        obj.args, obj.kwargs = (), {}
        if base is dict and isinstance(state, dict):  # a dict subclass: the state is its items
            obj.update(state)
        return obj
    if cls is OrderedDict or cls is dict:
        return cls(state or {})
    raise pickle.UnpicklingError("refusing copyreg._reconstructor for %r" % (cls,))


def _numpy_reconstruct(*args):
    """``numpy.core.multiarray._reconstruct`` (pickled numpy arrays)."""
    return np.core.multiarray._reconstruct(*args)


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "range"): range,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "str"): str,
    ("builtins", "bool"): bool,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("__builtin__", "object"): object,
    ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding),
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): _rebuild_device_tensor_from_numpy,
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """Unpickler that resolves only known-safe globals and reads storages through ``storage_reader``.

    Args:
        file: binary file object positioned at a pickle.
        storage_reader: ``callable(storage_type, key, numel) -> 1-D np.ndarray or None``.
        legacy: whether persistent ids follow the legacy stream layout (extra view metadata field).
    """

    def __init__(self, file, storage_reader, legacy=False):
        super().__init__(file, encoding="latin1")
        self._storage_reader = storage_reader
        self._legacy = legacy
        self._storages = {}
        self._placeholder_classes = {}

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _TorchStorageType(name)
        if module == "torch" and name in _TORCH_DTYPE_NAMES:
            return _TorchDtype(name)
        key = (module, name)
        if key not in self._placeholder_classes:
            base = TorchScriptObject if module.startswith("__torch__") else UnresolvedObject
            self._placeholder_classes[key] = type(name, (base,), {"qualified_name": module + "." + name})
        return self._placeholder_classes[key]

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id:
            raise pickle.UnpicklingError("unexpected persistent id %r" % (saved_id,))
        kind = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
        if kind == "module":  # legacy full-module pickles carry source code records; only the class matters
            return saved_id[1]
        if kind != "storage":
            raise pickle.UnpicklingError("unknown persistent id kind %r" % (kind,))
        storage_type, key = saved_id[1], str(saved_id[2])
        numel = int(saved_id[4])
        if not isinstance(storage_type, _TorchStorageType):
            raise pickle.UnpicklingError("storage record with unknown storage type %r" % (storage_type,))
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type, self._storage_reader(storage_type, key, numel))
        storage = self._storages[key]
        view = saved_id[5] if self._legacy and len(saved_id) > 5 else None
        if view is not None and storage.array is not None:
            _view_key, offset, view_size = view
            return _Storage(storage_type, storage.array[int(offset):int(offset) + int(view_size)])
        return storage


def _fail(path, what):
    return TorchArchiveError("%s: %s" % (path, what))


def _zip_prefix(path, names):
    """The archive's top-level folder (torch uses one folder per archive), found via its data.pkl."""
    candidates = [n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not candidates:
        if "data.pkl" in names:
            return ""
        raise _fail(path, "zip archive has no <folder>/data.pkl record, so it is not a torch.save/torch.jit.save file"
                          " (records: %s)" % ", ".join(sorted(names)[:8]))
    if len(candidates) > 1:
        raise _fail(path, "zip archive has several data.pkl records: %s" % ", ".join(candidates))
    return candidates[0]


def _cannot_read(path, error):
    """Args: path: the file; error: the OSError reading it raised. Returns: the TorchArchiveError to raise."""
    return _fail(path, "cannot read (%s)" % (error.strerror or error))


def _load_zip(path, torchscript):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise _fail(path, "damaged zip archive (%s); the file is probably truncated" % exc) from None
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    with archive:
        names = archive.namelist()
        prefix = _zip_prefix(path, names)
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            raise _fail(path, "unknown byteorder record %r" % byteorder)

        def read_storage(storage_type, key, numel):
            record = prefix + "data/" + key
            try:
                raw = archive.read(record)
            except KeyError:
                raise _fail(path, "storage record %s is missing" % record) from None
            except (zipfile.BadZipFile, EOFError, OSError, zlib_error) as exc:
                raise _fail(path, "storage record %s cannot be read (%s)" % (record, exc)) from None
            dtype = storage_type.dtype
            if byteorder != sys.byteorder:
                dtype = dtype.newbyteorder("<" if byteorder == "little" else ">")
            if len(raw) % dtype.itemsize:
                raise _fail(path, "storage record %s has %d bytes, not a multiple of %d (%s)"
                            % (record, len(raw), dtype.itemsize, storage_type.name))
            array = np.frombuffer(raw, dtype=dtype)
            if array.size < numel:
                raise _fail(path, "storage record %s holds %d elements, the pickle expects %d"
                            % (record, array.size, numel))
            return array.astype(storage_type.dtype, copy=False)

        try:
            pickled = archive.read(prefix + "data.pkl")
        except (zipfile.BadZipFile, EOFError, OSError, zlib_error) as exc:
            raise _fail(path, "data.pkl cannot be read (%s)" % exc) from None
        try:
            obj = _Unpickler(io.BytesIO(pickled), read_storage).load()
        except TorchArchiveError:
            raise
        except Exception as exc:  # a damaged pickle raises many exception types
            raise _fail(path, "data.pkl is not a readable pickle (%s: %s)" % (type(exc).__name__, exc)) from None
        is_script = any(n.startswith(prefix + "code/") for n in names) or isinstance(obj, TorchScriptObject)
        if is_script and torchscript == "state_dict":
            code = {n[len(prefix + "code/"):]: archive.read(n).decode("utf-8", "replace")
                    for n in names if n.startswith(prefix + "code/") and n.endswith(".py")}
            return torchscript_state_dict(obj, _parse_torchscript_code(code), path=path)
        return obj


def _load_legacy(path, fileobj):
    try:
        magic = pickle.load(fileobj)
    except Exception:
        magic = None
    if magic != LEGACY_MAGIC_NUMBER:
        raise _fail(path, "neither a zip archive (torch.save >= 1.6, torch.jit.save) nor a legacy torch.save stream "
                          "(wrong magic number)")
    try:
        protocol = pickle.load(fileobj)
        if protocol != LEGACY_PROTOCOL_VERSION:
            raise _fail(path, "legacy torch.save stream with unknown protocol version %r" % (protocol,))
        sys_info = pickle.load(fileobj)  # endianness and C type sizes of the writing machine
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise _fail(path, "legacy torch.save stream written on a big-endian machine is not supported")
        start = fileobj.tell()
        # Tensors are rebuilt while unpickling but their bytes come after the pickle, so read twice: first to find
        # where the storages start, then again with the storages in hand.
        first = _Unpickler(fileobj, lambda storage_type, key, numel: None, legacy=True)
        first.load()
        keys = pickle.load(fileobj)
        arrays = {}
        for key in keys:
            key = str(key)
            if key not in first._storages:
                raise _fail(path, "storage key %s listed but never used by the pickle" % key)
            storage_type = first._storages[key].storage_type
            header = fileobj.read(8)
            if len(header) < 8:
                raise _fail(path, "truncated: storage %s has no size header" % key)
            (numel,) = struct.unpack("<q", header)
            nbytes = numel * storage_type.dtype.itemsize
            raw = fileobj.read(nbytes)
            if len(raw) < nbytes:
                raise _fail(path, "truncated: storage %s needs %d bytes, %d left" % (key, nbytes, len(raw)))
            dtype = storage_type.dtype if sys.byteorder == "little" else storage_type.dtype.newbyteorder("<")
            arrays[key] = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype, copy=False)
        fileobj.seek(start)

        def read_storage(storage_type, key, numel):
            if key not in arrays:
                raise _fail(path, "storage %s is not in the stream's storage list" % key)
            return arrays[key]

        return _Unpickler(fileobj, read_storage, legacy=True).load()
    except TorchArchiveError:
        raise
    except Exception as exc:
        raise _fail(path, "damaged legacy torch.save stream (%s: %s); the file is probably truncated"
                    % (type(exc).__name__, exc)) from None


def load_torch_file(path, torchscript="state_dict"):
    """Read a file written by ``torch.save`` (zip or legacy format) or ``torch.jit.save``, without torch.

    Args:
        path: file path.
        torchscript: for TorchScript archives, ``"state_dict"`` returns the module's state_dict (an ``OrderedDict``
            of dotted names -> arrays, parameters and buffers only, in torch's order); ``"objects"`` returns the
            root :class:`TorchScriptObject` tree.

    Returns:
        The unpickled object: dicts/lists/tuples/scalars as in the file, every tensor as a C-contiguous
        ``np.ndarray`` with the file's dtype (bfloat16 is widened to float32), unknown classes as
        :class:`UnresolvedObject`.

    Raises:
        TorchArchiveError: the file is missing, unreadable (``cannot read (Permission denied)``), not a torch file,
            truncated or damaged (message names the file).
    """
    path = os.fspath(path)
    if torchscript not in ("state_dict", "objects"):
        raise ValueError("torchscript must be 'state_dict' or 'objects', got %r" % (torchscript,))
    if not os.path.isfile(path):
        raise _fail(path, "no such file")
    kind = torch_file_format(path)
    if kind == "zip":
        return _load_zip(path, torchscript)
    try:
        fileobj = open(path, "rb")
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    with fileobj:
        head = fileobj.read(4)
        if not head:
            raise _fail(path, "empty file")
        if kind is None:
            raise _fail(path, "not a torch checkpoint: neither a zip archive nor a pickle stream (starts with %r)"
                        % head)
        fileobj.seek(0)
        return _load_legacy(path, fileobj)


def torch_file_format(path):
    """How ``torch.save`` / ``torch.jit.save`` wrote ``path``, judged from its first bytes.

    Args:
        path: an existing file.

    Returns:
        ``"zip"`` (the zip format, TorchScript included), ``"legacy"`` (a pickle stream) or None (neither).

    Raises:
        TorchArchiveError: ``"<path>: cannot read (<reason>)"`` (permissions, an I/O error).
    """
    try:
        with open(path, "rb") as fileobj:
            head = fileobj.read(2)
    except OSError as exc:
        raise _cannot_read(path, exc) from None
    if head == b"PK" or zipfile.is_zipfile(path):  # a zip local header; is_zipfile also finds prepended data
        return "zip"
    return "legacy" if head[:1] == b"\x80" else None  # pickle protocol marker


_CLASS_RE = re.compile(r"^class\s+(\w+)\s*\(")
_LIST_RE = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*\[(.*)\]")


def _parse_torchscript_code(code_files):
    """Parameter/buffer names per TorchScript class from the archive's ``code/`` sources.

    Args:
        code_files: dict ``relative path under code/ -> source text``.

    Returns:
        dict ``qualified class name -> (parameter names, buffer names)``, only for classes whose source declares
        ``__parameters__`` or ``__buffers__`` (others fall back to "every array attribute").
    """
    declared = {}
    for rel_path, source in code_files.items():
        module = rel_path[: -len(".py")].replace("/", ".")
        current = None
        for line in source.splitlines():
            match = _CLASS_RE.match(line)
            if match:
                current = module + "." + match.group(1)
                continue
            match = _LIST_RE.match(line)
            if match and current is not None:
                names = re.findall(r"\"([^\"]+)\"|'([^']+)'", match.group(2))
                names = [a or b for a, b in names]
                entry = declared.setdefault(current, ([], []))
                entry[0 if match.group(1) == "__parameters__" else 1][:] = names
    return declared


def torchscript_state_dict(root, declared, path="<archive>"):
    """Recover ``state_dict()`` from a TorchScript object tree.

    Args:
        root: the :class:`TorchScriptObject` from ``data.pkl``.
        declared: output of the ``code/`` parse: qualified class -> (parameter names, buffer names). A class missing
            from it (archive without code) contributes every array attribute.
        path: file name for error messages.

    Returns:
        ``OrderedDict`` dotted name -> ``np.ndarray``, ordered like torch (own parameters, own buffers, then
        submodules in attribute order).
    """
    if not isinstance(root, TorchScriptObject):
        raise _fail(path, "TorchScript data.pkl holds %s, not a scripted module" % type(root).__name__)
    state = OrderedDict()

    def visit(obj, prefix):
        attrs = obj.__dict__.get("state") if isinstance(obj.__dict__.get("state"), dict) else {}
        names = declared.get(obj.qualified_name)
        if names is None:
            own = [k for k, v in attrs.items() if isinstance(v, np.ndarray)]
        else:
            own = list(names[0]) + list(names[1])
        for name in own:
            value = attrs.get(name)
            if isinstance(value, np.ndarray):  # a parameter declared but set to None is absent, as in torch
                state[prefix + name] = value
        for name, value in attrs.items():
            if isinstance(value, TorchScriptObject):
                visit(value, prefix + name + ".")

    visit(root, "")
    return state


def find_state_dict(obj, path="<object>"):
    """Find the tensor dictionary inside a loaded checkpoint.

    Looks at the object itself, then under ``state_dict`` (Lightning), ``model_state_dict``, ``model``, ``module``,
    ``net`` and ``params``; a TorchScript object tree gives its recovered state_dict.

    Args:
        obj: what :func:`load_torch_file` returned.
        path: file name for error messages.

    Returns:
        ``OrderedDict`` name -> ``np.ndarray`` (non-array entries are dropped).

    Raises:
        TorchArchiveError: no dictionary of arrays is found (message lists the top-level keys).
    """
    if isinstance(obj, TorchScriptObject):
        return torchscript_state_dict(obj, {}, path=path)

    def is_tensor_dict(value):
        return (isinstance(value, dict) and len(value) > 0
                and all(isinstance(k, str) for k in value)
                and sum(isinstance(v, np.ndarray) for v in value.values()) >= max(1, len(value) // 2))

    if is_tensor_dict(obj):
        return OrderedDict((k, v) for k, v in obj.items() if isinstance(v, np.ndarray))
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "module", "net", "params"):
            inner = obj.get(key)
            if isinstance(inner, TorchScriptObject):
                return torchscript_state_dict(inner, {}, path=path)
            if is_tensor_dict(inner):
                return OrderedDict((k, v) for k, v in inner.items() if isinstance(v, np.ndarray))
        raise _fail(path, "no state_dict found; top-level keys: %s" % ", ".join(map(str, list(obj)[:20])))
    raise _fail(path, "no state_dict found in a %s" % type(obj).__name__)
