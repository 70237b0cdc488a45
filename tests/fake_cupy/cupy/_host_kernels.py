"""ElementwiseKernel, RawKernel and RawModule of the CuPy stand-in: the CUDA sources that nnx passes
to CuPy are compiled for the host with g++ and cuda_host.h, and launched with the grid and block
asked for. The arguments are checked as CuPy converts them (cupy/_core/_kernel.pyx,
cupy/cuda/function.pyx): a device array where a kernel takes a pointer, a scalar whose C type is
the parameter's (a Python float is a double, a Python int a long long), exact dtypes for typed
ElementwiseKernel parameters, one dtype per type placeholder, outputs of the broadcast shape."""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import cupy
from cupy import _stand_in

HEADER = Path(__file__).with_name("cuda_host.h")
_C_TYPES = {
    "bool": "bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
    "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
    "float16": "half", "float32": "float", "float64": "double",
}  # fmt: skip
_DTYPES_OF_C = {c: np.dtype(d) for d, c in _C_TYPES.items() if d != "float16"} | {
    "char": np.dtype(np.int8), "long": np.dtype(np.int64), "unsigned long": np.dtype(np.uint64),
    "size_t": np.dtype(np.uint64), "ptrdiff_t": np.dtype(np.int64), "unsigned": np.dtype(np.uint32),
}  # fmt: skip
_MAX_THREADS, _MAX_SHARED = 1024, 48 * 1024


class CUDADriverError(RuntimeError):
    """As cupy_backends.cuda.api.driver.CUDADriverError."""


# ---- compiling ---------------------------------------------------------------------------------
def _cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"nnx-cupy-stand-in-{os.getuid()}"
    path.mkdir(exist_ok=True)
    return path


def _compile(source: str) -> ctypes.CDLL:
    """The shared library of ``source`` (cuda_host.h included), built once per source and kept."""
    code = f'#include "{HEADER}"\n{source}'
    key = hashlib.sha256((code + HEADER.read_text()).encode()).hexdigest()[:24]
    library = _cache_dir() / f"{key}.so"
    if not library.exists():
        compiler = shutil.which("g++")
        if compiler is None:
            raise RuntimeError("the CuPy stand-in compiles kernels with g++, which is not installed")
        source_file = _cache_dir() / f"{key}.{os.getpid()}.cpp"
        source_file.write_text(code)
        partial = library.with_suffix(f".{os.getpid()}.so")
        command = [compiler, "-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-w", "-o", str(partial),
                   str(source_file)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        source_file.unlink()
        if result.returncode != 0:
            raise CompileException(result.stderr, code)
        os.replace(partial, library)  # atomic: another process may build the same kernel
    return ctypes.CDLL(str(library))


class CompileException(Exception):
    """As cupy.cuda.compiler.CompileException: the compiler's messages and the source."""

    def __init__(self, log: str, source: str) -> None:
        super().__init__(f"the stand-in could not compile the kernel:\n{log[-3000:]}")
        self.log, self.source = log, source


def _preprocessed(source: str) -> str:
    """``source`` with its macros expanded (to read the kernels' parameter types)."""
    result = subprocess.run(["g++", "-E", "-P", "-x", "c++", "-"], input=source, capture_output=True, text=True)
    if result.returncode != 0:
        raise CompileException(result.stderr, source)
    return result.stdout


def _host_source(source: str) -> str:
    """CUDA source as host C++: dynamic shared memory (``extern __shared__ T name[];``) becomes a
    pointer to the launch's buffer, and static ``__shared__ T name[N];`` a static that every block
    finds poisoned (cuda_host.h: register_shared)."""
    align = r"(?:__align__\(\s*\d+\s*\)\s*)?"
    dynamic = re.compile(r"extern\s+__shared__\s+" + align + r"([\w\s]+?)\s*(\w+)\s*\[\s*\]\s*;")
    source = dynamic.sub(r"\1* \2 = reinterpret_cast<\1*>(nnx::block.dynamic_shared.data());", source)
    static = re.compile(r"__shared__\s+" + align + r"([\w\s]+?)\s+(\w+)\s*((?:\[[^\]]+\])*)\s*;")
    return static.sub(
        r"static \1 \2\3; static const bool nnx_shared_\2 = nnx::register_shared(&\2, sizeof \2);", source
    )


# ---- arguments -----------------------------------------------------------------------------------
def _scalar_dtype(value: Any, raw: bool = True) -> np.dtype:
    """The dtype CuPy gives a scalar kernel argument (_scalar.pyx: numpy_dtype_from_pyscalar); a
    NumPy array is refused with RawKernel's message (function.pyx), or ElementwiseKernel's."""
    if type(value) is bool:
        return np.dtype(np.bool_)
    if type(value) is float:
        return np.dtype(np.float64)
    if type(value) is int:
        return np.dtype(np.uint64 if value >= 2**63 else np.int64)
    if isinstance(value, np.generic):
        return value.dtype
    if isinstance(value, np.ndarray) and raw:
        raise TypeError(
            f"You are trying to pass a numpy.ndarray of shape {value.shape} as a kernel parameter. Only numpy.ndarrays "
            "of size one can be passed by value. If you meant to pass a pointer to __global__ memory, you need to pass "
            "a cupy.ndarray instead."
        )
    raise TypeError(f"Unsupported type {type(value)}")


class _Parameter(NamedTuple):
    name: str
    c_type: str  # the declared type, as the wrapper casts to it (pointer types end in '*')
    dtype: np.dtype | None  # of the value, or of the pointee
    pointer: bool


def _kernel_parameters(preprocessed: str, name: str) -> list[_Parameter]:
    match = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + re.escape(name) + r"\s*\(([^)]*)\)", preprocessed)
    if match is None:
        raise AttributeError(f'the kernel source defines no extern "C" __global__ function {name!r}')
    parameters = []
    for declaration in filter(None, (p.strip() for p in match.group(1).split(","))):
        words = declaration.replace("*", " * ").split()
        words = [w for w in words if w not in ("__restrict__", "__restrict")]
        *type_words, param_name = words
        pointer = "*" in type_words
        base = " ".join(w for w in type_words if w not in ("const", "*", "volatile"))
        parameters.append(_Parameter(param_name, " ".join(type_words), _DTYPES_OF_C.get(base), pointer))
    return parameters


def _dim3(value: Any, what: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, tuple)
        or not 1 <= len(value) <= 3
        or not all(isinstance(v, (int, np.integer)) for v in value)
    ):
        raise TypeError(f"{what} must be a tuple of 1 to 3 ints, as CuPy's Function.__call__ takes it; got {value!r}")
    return (*map(int, value), 1, 1)[:3]  # type: ignore[return-value]


class _Function:
    """A compiled kernel: ``f(grid, block, args, shared_mem=0, stream=None)`` as cupy.cuda.Function."""

    def __init__(self, library: ctypes.CDLL, name: str, parameters: list[_Parameter]) -> None:
        self._launch = getattr(library, f"nnx_launch_{name}")
        self._launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
        self._error = library.nnx_error
        self._error.restype = ctypes.c_char_p
        self.name, self.parameters = name, parameters

    def __call__(self, grid: Any, block: Any, args: Any, *, shared_mem: int = 0, stream: Any = None,
                 enable_cooperative_groups: bool = False) -> None:  # fmt: skip
        grid3, block3 = _dim3(grid, "grid"), _dim3(block, "block")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple; got {type(args).__name__}")
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name} takes {len(self.parameters)} arguments; got {len(args)}")
        threads = block3[0] * block3[1] * block3[2]
        if not 0 < threads <= _MAX_THREADS or block3[2] > 64 or min(grid3) < 1 or grid3[1] > 65535 or grid3[2] > 65535:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: grid {grid3}, block {block3}")
        if not 0 <= shared_mem <= _MAX_SHARED:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: shared_mem={shared_mem} over {_MAX_SHARED} bytes")
        keep, pointers = [], (ctypes.c_void_p * max(len(args), 1))()
        for i, (value, p) in enumerate(zip(args, self.parameters, strict=True)):
            if p.pointer:
                if not isinstance(value, cupy.ndarray):
                    raise TypeError(f"{self.name}: argument {i} ({p.c_type} {p.name}) must be a cupy.ndarray; "
                                    f"got {type(value).__name__}")  # fmt: skip
                if p.dtype is not None and value.dtype != p.dtype:
                    raise TypeError(f"{self.name}: argument {i} ({p.c_type} {p.name}) points to {p.dtype}; got a "
                                    f"{value.dtype} array")  # fmt: skip
                cell = ctypes.c_void_p(value.data.ptr)
            else:
                given = _scalar_dtype(value)
                if p.dtype is None or given != p.dtype:
                    raise TypeError(
                        f"{self.name}: argument {i} ({p.c_type} {p.name}) takes {p.dtype}; got {type(value).__name__} "
                        f"{value!r}, which CuPy passes as {given} ({given.itemsize} bytes): the kernel would misread it"
                    )
                cell = np.array(value, dtype=given)
            keep.append(cell)
            pointers[i] = ctypes.addressof(cell) if isinstance(cell, ctypes.c_void_p) else cell.ctypes.data
        _stand_in.launches[self.name] += 1
        if self._launch(*grid3, *block3, shared_mem, pointers):
            raise CUDADriverError(f"{self.name}: {self._error().decode()}")


def _launcher(name: str, parameters: list[_Parameter]) -> str:
    casts = ", ".join(f"*({p.c_type}*)a[{i}]" for i, p in enumerate(parameters))
    return f"""
static void nnx_body_{name}(void* closure) {{ void** a = (void**)closure; {name}({casts}); }}
extern "C" int nnx_launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                 size_t shared, void** args) {{
    return nnx::run_grid(uint3{{gx, gy, gz}}, uint3{{bx, by, bz}}, shared, nnx_body_{name}, args);
}}
"""


class RawModule:
    """cupy.RawModule(code=..., options=(), name_expressions=None): get_function(name)."""

    def __init__(self, code: str | None = None, *, path: str | None = None, options: tuple = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, enable_cooperative_groups: bool = False,
                 name_expressions: Any = None, jitify: bool = False) -> None:  # fmt: skip
        if code is None or path is not None or name_expressions is not None or jitify:
            raise AttributeError("the CuPy stand-in implements cupy.RawModule(code=...) only")
        self.code, self.options = code, options
        self._functions: dict[str, _Function] = {}

    def get_function(self, name: str) -> _Function:
        if name not in self._functions:
            parameters = _kernel_parameters(_preprocessed(self.code), name)
            library = _compile(_host_source(self.code) + _launcher(name, parameters)
                               + 'extern "C" const char* nnx_error() { return nnx::error; }\n')  # fmt: skip
            self._functions[name] = _Function(library, name, parameters)
        return self._functions[name]


class RawKernel:
    """cupy.RawKernel(code, name, options=()): ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, code: str, name: str, options: tuple = (), backend: str = "nvrtc",
                 translate_cucomplex: bool = False, enable_cooperative_groups: bool = False,
                 jitify: bool = False) -> None:  # fmt: skip
        self.code, self.name, self.options = code, name, options
        self._module = RawModule(code=code, options=options, jitify=jitify)

    @property
    def kernel(self) -> _Function:
        return self._module.get_function(self.name)

    def __call__(self, grid: Any, block: Any, args: Any, **kwargs: Any) -> None:
        self.kernel(grid, block, args, **kwargs)


# ---- ElementwiseKernel ---------------------------------------------------------------------------
class _Param(NamedTuple):
    name: str
    dtype: np.dtype | None  # None: a type placeholder such as T
    ctype: str  # the placeholder's name, or the C type of dtype
    raw: bool


def _params(text: str) -> tuple[_Param, ...]:
    """As ParameterInfo: "T x, float64 lr, raw T y" -> parameters."""
    out = []
    for param in filter(None, (p.strip() for p in text.split(","))):
        words = param.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {param}")
        *keywords, t, name = words
        for keyword in keywords:
            if keyword != "raw":
                raise Exception(f'Unknown keyword "{keyword}"')
        if len(t) == 1:
            out.append(_Param(name, None, t, bool(keywords)))
        else:
            dtype = np.dtype(t)
            out.append(_Param(name, dtype, _C_TYPES[dtype.name], bool(keywords)))
    return tuple(out)


class ElementwiseKernel:
    """cupy.ElementwiseKernel(in_params, out_params, operation, name='kernel', ...): called with the
    inputs, and optionally the outputs; broadcasts, checks types as CuPy does, runs ``operation`` on
    every element in a loop compiled for the host."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel", reduce_dims: bool = True,
                 preamble: str = "", no_return: bool = False, return_tuple: bool = False, loop_prep: str = "",
                 after_loop: str = "", options: tuple = ()) -> None:  # fmt: skip
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        if any(p.raw for p in self.in_params + self.out_params):
            raise AttributeError("the CuPy stand-in does not implement raw parameters of ElementwiseKernel")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self._compiled: dict[tuple, Any] = {}

    def __call__(self, *args: Any, size: int = -1, stream: Any = None, block_size: int = 128) -> Any:
        if size != -1:
            raise AttributeError("the CuPy stand-in does not implement ElementwiseKernel(size=...)")
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                            f"{self.nargs} (with outputs), but given {len(args)}.")  # fmt: skip
        for a in args:
            if not isinstance(a, cupy.ndarray):
                _scalar_dtype(a, raw=False)  # TypeError for what CuPy refuses (a NumPy array, a list, None)
        arrays = [a for a in args if isinstance(a, cupy.ndarray)]
        if not arrays:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        inputs, outputs = list(args[: self.nin]), list(args[self.nin :])
        types = self._decide_types(inputs, outputs)
        if not outputs:
            outputs = [cupy.empty(shape, types[p.name]) for p in self.out_params]
        for out in outputs:
            if not isinstance(out, cupy.ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")
            if out.shape != shape:
                raise ValueError("Out shape is mismatched")
        result = None if self.no_return else outputs[0] if self.nout == 1 and not self.return_tuple else tuple(outputs)
        if 0 in shape:
            return result
        self._run(shape, inputs, outputs, types)
        return result

    def _decide_types(self, inputs: list, outputs: list) -> dict[str, np.dtype]:
        """Each parameter's dtype, as _decide_params_type_core: typed ones exact, one dtype per placeholder."""
        placeholders: dict[str, np.dtype] = {}
        for params, given in ((self.out_params, outputs), (self.in_params, inputs)):
            for p, a in zip(params, given, strict=False):  # outputs may be absent
                if not isinstance(a, cupy.ndarray):
                    if params is self.out_params:
                        raise TypeError("Output arguments must be cupy.ndarray")
                    continue
                if p.dtype is not None:
                    if a.dtype != p.dtype:
                        raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {p.dtype}")
                elif p.ctype in placeholders:
                    if placeholders[p.ctype] != a.dtype:
                        raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {placeholders[p.ctype]} {p.ctype}")
                else:
                    placeholders[p.ctype] = a.dtype
        types = {}
        for p in self.in_params + self.out_params:
            if p.dtype is None and p.ctype not in placeholders:
                raise TypeError(f"the type {p.ctype} of {p.name} is decided by no array argument")
            types[p.name] = p.dtype if p.dtype is not None else placeholders[p.ctype]
        return types | {f"typedef:{k}": v for k, v in placeholders.items()}

    def _run(self, shape: tuple, inputs: list, outputs: list, types: dict[str, np.dtype]) -> None:
        params = self.in_params + self.out_params
        kinds = tuple(isinstance(a, cupy.ndarray) for a in inputs + outputs)
        key = (tuple(sorted((k, v.str) for k, v in types.items())), kinds)
        if key not in self._compiled:
            self._compiled[key] = self._build(params, kinds, types)
        run = self._compiled[key]
        ndim = max(len(shape), 1)
        shape_c = (ctypes.c_longlong * ndim)(*(shape or (1,)))
        pointers = (ctypes.c_void_p * len(params))()
        strides = (ctypes.c_longlong * (len(params) * ndim))()
        keep = []
        for i, (p, a) in enumerate(zip(params, inputs + outputs, strict=True)):
            if isinstance(a, cupy.ndarray):
                view = np.broadcast_to(a._a, shape) if a.shape != shape else a._a
                pointers[i] = view.__array_interface__["data"][0]
                for d, s in enumerate(view.strides or (0,)):
                    strides[i * ndim + d] = s
            else:  # a scalar, converted to the parameter's type (CScalar.apply_dtype)
                cell = np.array(a, dtype=types[p.name])
                keep.append(cell)
                pointers[i] = cell.ctypes.data
        _stand_in.launches[self.name] += 1
        run(ctypes.c_longlong(int(np.prod(shape))), ctypes.c_int(ndim), shape_c, pointers, strides)

    def _build(self, params: tuple[_Param, ...], kinds: tuple[bool, ...], types: dict[str, np.dtype]) -> Any:
        typedefs = "".join(
            f"typedef {_C_TYPES[v.name]} {k[8:]};\n" for k, v in types.items() if k.startswith("typedef:")
        )
        scalars, refs = [], []
        for i, (p, is_array) in enumerate(zip(params, kinds, strict=True)):
            c_type = p.ctype
            if not is_array:
                scalars.append(f"const {c_type} {p.name} = *(const {c_type}*)ptrs[{i}];")
            elif i < self.nin:
                refs.append(f"const {c_type}& {p.name} = *(const {c_type}*)(ptrs[{i}] + off[{i}]);")
            else:
                refs.append(f"{c_type}& {p.name} = *({c_type}*)(ptrs[{i}] + off[{i}]);")
        n = len(params)
        source = f"""{typedefs}{self.preamble}
extern "C" void nnx_elementwise(long long size, int ndim, const long long* shape, char** ptrs,
                                const long long* strides) {{
    {" ".join(scalars)}
    long long index[32] = {{0}}, off[{n}] = {{0}};
    for (long long i = 0; i < size; i++) {{
        {{ {" ".join(refs)}
          {self.operation};
        }}
        for (int d = ndim - 1; d >= 0; d--) {{  // the next element: carry through the axes
            index[d]++;
            for (int a = 0; a < {n}; a++) off[a] += strides[a * ndim + d];
            if (index[d] < shape[d]) break;
            for (int a = 0; a < {n}; a++) off[a] -= strides[a * ndim + d] * shape[d];
            index[d] = 0;
        }}
    }}
}}
"""
        function = _compile(source).nnx_elementwise
        function.restype = None
        return function


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy._host_kernels.{name}")
