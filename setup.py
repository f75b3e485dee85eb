"""Builds kp3d_kernels._C (C++ CPU kernels, plus CUDA kernels when possible); the rest of the
packaging is in pyproject.toml.

    pip install --no-build-isolation .      # compiles against the installed torch

The CUDA kernels (csrc/cuda/*.cu) are added when torch is a CUDA build and a CUDA toolkit is
found, or when FORCE_CUDA=1 (then TORCH_CUDA_ARCH_LIST is required if no GPU is visible).
Without torch in the build environment (plain `pip install .` with build isolation) nothing is
compiled: the C++ sources are packaged and compiled with ninja on first use, with a warning.
"""

import glob
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithSources(build_py):
    """Also ship csrc/ inside the package (as kp3d_kernels/_csrc) for the on-first-use build."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "kp3d_kernels", "_csrc")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "csrc"), target,
                        ignore=shutil.ignore_patterns("*.o", "__pycache__"))


def say(message):
    print(f"kp3d setup: {message}", file=sys.stderr)


def extension_modules():
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        say("torch is not importable in the build environment, so NO kernels are compiled now. "
            "They will be compiled on first use (needs ninja and a C++ compiler). To compile them "
            "now: pip install torch first, then pip install --no-build-isolation .")
        return [], {}

    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    # -fno-trapping-math -fno-math-errno let the pixel loops vectorise; unlike -ffast-math they
    # change no result.
    cxx_flags = ["-O3", "-g0", "-fopenmp", "-std=c++17", "-fno-trapping-math", "-fno-math-errno"]
    define_macros = []
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
    force_cuda = os.environ.get("FORCE_CUDA") == "1"
    want_cuda = bool(cuda_sources) and (
        force_cuda or (torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None))
    if want_cuda:
        if torch.version.cuda is None:
            raise RuntimeError("FORCE_CUDA=1 but this torch is a CPU-only build; install a CUDA "
                               "build of torch to compile the CUDA kernels")
        if not torch.cuda.is_available() and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            raise RuntimeError("no GPU is visible: set TORCH_CUDA_ARCH_LIST (e.g. '8.0;9.0') to "
                               "choose the architectures to compile for")
        say(f"building the CPU and CUDA kernels (CUDA {torch.version.cuda}, "
            f"toolkit {cpp_extension.CUDA_HOME})")
        ext = cpp_extension.CUDAExtension(
            "kp3d_kernels._C", sources + cuda_sources, include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros + [("KP3D_WITH_CUDA", None)],
            # No --use_fast_math: the CUDA kernels keep IEEE exp/log/division/sqrt, so that they
            # follow the CPU kernels' NaN, tie and rounding behaviour (csrc/segment_math.h).
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"])
    else:
        why = ("torch is a CPU-only build" if torch.version.cuda is None else
               "no CUDA toolkit was found (set CUDA_HOME)")
        say(f"building the CPU kernels only ({why}); the `cuda` backend will be unavailable")
        ext = cpp_extension.CppExtension(
            "kp3d_kernels._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros, extra_compile_args=cxx_flags,
            extra_link_args=["-fopenmp"])
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()
cmdclass["build_py"] = BuildPyWithSources

# The package's metadata (name, version, dependencies, entry point) is in pyproject.toml.
setup(ext_modules=ext_modules, cmdclass=cmdclass)
