"""Builds stagelog._stagelog with CMake from the repository this folder sits in.

Nothing is downloaded: CMake, a C++20 compiler, pybind11 and Python's headers come from the
system (Debian: scripts/setup). STAGELOG_CMAKE_ARGS adds arguments to the CMake configure.
"""

import os
import pathlib
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not (ROOT / "CMakeLists.txt").is_file() or not (ROOT / "src").is_dir():
            sys.exit(f"stagelog: {ROOT} is not the stagelog repository; build from a checkout")
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        build.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
            "-DSTAGELOG_BUILD_SERVER=OFF", "-DSTAGELOG_BUILD_TESTS=OFF",
            "-DSTAGELOG_BUILD_BENCH=OFF", "-DSTAGELOG_BUILD_EXAMPLES=OFF",
            "-DSTAGELOG_INSTALL=OFF", "-DSTAGELOG_BUILD_PYTHON=ON",
            f"-DPython_EXECUTABLE={sys.executable}",
        ] + shlex.split(os.environ.get("STAGELOG_CMAKE_ARGS", ""))
        jobs = str(os.cpu_count() or 2)
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "stagelog_python", "-j", jobs],
                       check=True)
        built = next((build / "python" / "stagelog").glob("_stagelog*.so"))
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built), str(target))


setup(ext_modules=[Extension("stagelog._stagelog", sources=[])],
      cmdclass={"build_ext": CMakeBuild})
