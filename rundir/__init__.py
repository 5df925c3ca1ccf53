"""The run directory: the contract between the engine and every reader.

Only this package knows the run directory's files. It imports neither engine/
nor tui/, nor torch, nor textual, so every reader (dashboard, headless
printer, browser, eval reports, tests) can use it. See docs/run-directory.md.
"""
