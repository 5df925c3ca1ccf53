"""Helpers shared by the tests and the benches (fixtures themselves live in tests/conftest.py).

Import from the module that names the job: `from support.synthetic import SyntheticRun`. pytest puts tests/ on
sys.path for the test modules; a bench that uses these helpers puts it there itself.
"""
