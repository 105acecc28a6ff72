"""Builds the extension bnn._bnn with the repository's CMake (BNN_BUILD_PYTHON) for the
interpreter running pip, and puts it into the package (pyproject.toml, docs/python.md)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent.parent  # the repository: python/ is built from inside it


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = Path(self.build_temp).resolve() / "cmake"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
                        "-DBNN_BUILD_PYTHON=ON", "-DBNN_BUILD_TESTS=OFF", "-DBNN_BUILD_EXAMPLES=OFF", "-DBNN_MPI=OFF",
                        f"-DPython_EXECUTABLE={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "bnn_python", "--parallel",
                        str(os.cpu_count() or 1)], check=True)
        built = next((build / "python" / "bnn").glob("_bnn*.so"))
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(ext_modules=[Extension("bnn._bnn", sources=[])], cmdclass={"build_ext": CMakeBuild})
