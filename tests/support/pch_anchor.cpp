// The source of persoflow_test_pch (tests/CMakeLists.txt): the target exists to build the
// GoogleTest drivers' shared precompiled header once; it has no code of its own.
