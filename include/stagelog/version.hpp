#pragma once

/// @file
/// stagelog's version, the one source of it: CMake reads these lines for project(VERSION), and
/// so for the CMake package's version file and the pkg-config file; `stagelog --version`
/// prints STAGELOG_VERSION_STRING. Versions follow semantic versioning (CHANGELOG.md).

/// The major version: a change here may break code built against an earlier one.
#define STAGELOG_VERSION_MAJOR 0
/// The minor version: features added without breaking (before 1.0.0 it may break).
#define STAGELOG_VERSION_MINOR 1
/// The patch version: fixes only.
#define STAGELOG_VERSION_PATCH 0

#define STAGELOG_VERSION_STRINGIFY_(x) #x
#define STAGELOG_VERSION_STRINGIFY(x) STAGELOG_VERSION_STRINGIFY_(x)
/// "MAJOR.MINOR.PATCH", e.g. "0.1.0".
#define STAGELOG_VERSION_STRING                                                          \
  STAGELOG_VERSION_STRINGIFY(STAGELOG_VERSION_MAJOR)                                     \
  "." STAGELOG_VERSION_STRINGIFY(STAGELOG_VERSION_MINOR) "." STAGELOG_VERSION_STRINGIFY( \
      STAGELOG_VERSION_PATCH)
/// One number that grows with every version: MAJOR * 10000 + MINOR * 100 + PATCH.
#define STAGELOG_VERSION \
  (STAGELOG_VERSION_MAJOR * 10000 + STAGELOG_VERSION_MINOR * 100 + STAGELOG_VERSION_PATCH)
