# Soak and load suites (test/soak) run only with `make soak`.
ExUnit.start(exclude: [:soak])
