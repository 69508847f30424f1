"""
A pytest plugin: a Kubernetes-like API (kmock + realism shim) and kopf running against it.

Enable it with ``pytest_plugins = ["kube.plugin"]`` in ``tests/conftest.py``.

Fixtures:

* ``kube_api`` — a fresh emulator per test (starts in ~50 ms) on 127.0.0.1:<free port>;
  yields :class:`kube.shim.KubeAPI`. Fails the test at teardown if the emulator itself broke.
  Its options come from the overridable ``kube_emulator_options`` fixture (a dict).
* ``kube_namespace`` — a fresh namespace (named after the test) in ``kube_api``.
* ``run_kopf`` — ``with run_kopf('path/to/operator.py' or 'pkg.module', namespace=...) as kopf:``
  runs the operator in a background thread against ``kube_api`` and stops it on exit.
* ``wait_for`` — the polling helper :func:`wait_for` (also importable from here).
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click.testing
import pytest

from kube.shim import EmulatorServer, KubeAPI

T = TypeVar('T')

__all__ = ['wait_for', 'KopfHandle', 'kube_api', 'kube_namespace', 'run_kopf']


# --------------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1,
             message: str | Callable[[], str] | None = None) -> T:
    """
    Call ``predicate()`` every ``interval`` seconds until it returns a truthy value; return that value.

    Exceptions (including ``AssertionError`` from asserts inside the predicate) count as "not yet".
    On timeout, fail the test with ``message`` (a string or a callable producing one),
    the last returned value and the last exception.
    """
    deadline = time.monotonic() + timeout
    last_value: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last_value = predicate()
            last_error = None
            if last_value:
                return last_value
        except Exception as e:
            last_error = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    text = message() if callable(message) else message
    details = f"last value: {last_value!r}" + (f"; last error: {last_error!r}" if last_error else "")
    pytest.fail(f"Timed out after {timeout}s waiting for: {text or getattr(predicate, '__name__', predicate)} "
                f"({details})", pytrace=False)


# --------------------------------------------------------------------------------------------------
# Fixtures: the API
# --------------------------------------------------------------------------------------------------

@pytest.fixture()
def kube_emulator_options() -> dict[str, Any]:
    """
    Keyword arguments for :class:`kube.shim.KubeEmulator` (override this fixture to change them),
    e.g. ``{'auto_create_namespaces': True}`` or ``{'cr_validator': fn}``.
    """
    return {}


@pytest.fixture()
def kube_api(tmp_path: Any, kube_emulator_options: dict[str, Any]) -> Iterator[KubeAPI]:
    """A fresh Kubernetes-like API on 127.0.0.1 (see :class:`kube.shim.KubeAPI` and docs/testing-kube.md)."""
    import kubernetes.client
    saved_default = kubernetes.client.Configuration._default
    server = EmulatorServer(**kube_emulator_options).start()
    api = KubeAPI(server, tmpdir=str(tmp_path))
    try:
        yield api
    finally:
        server.stop()
        kubernetes.client.Configuration._default = saved_default
    if server.emulator.unexpected_errors:
        errors = '\n'.join(repr(e) for e in server.emulator.unexpected_errors)
        pytest.fail(f"The Kubernetes emulator itself failed (a bug in tests/kube/shim.py?):\n{errors}")


@pytest.fixture()
def kube_namespace(kube_api: KubeAPI, request: pytest.FixtureRequest) -> str:
    """A fresh namespace in ``kube_api``, named after the test (``test-...``)."""
    name = re.sub(r'[^a-z0-9-]+', '-', request.node.name.lower()).strip('-')[:50].strip('-') or 'test'
    kube_api.create_namespace(name)
    return name


@pytest.fixture(name='wait_for')
def _wait_for_fixture() -> Callable[..., Any]:
    """The :func:`wait_for` polling helper as a fixture."""
    return wait_for


# --------------------------------------------------------------------------------------------------
# Kopf in a background thread
# --------------------------------------------------------------------------------------------------

class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)


class KopfHandle:
    """
    A running kopf operator (what ``with run_kopf(...) as kopf:`` gives).

    * ``kopf.ready`` — a ``threading.Event``, set when startup handlers are done.
    * ``kopf.alive`` — whether the operator thread still runs.
    * ``kopf.logs()`` — the operator's log so far (text); ``kopf.errors()`` — its ERROR+ records.
    * ``kopf.output`` / ``kopf.exit_code`` / ``kopf.exception`` — after the block (click's result).
    * ``kopf.wait_for(predicate, ...)`` — like :func:`wait_for`, but fails fast if kopf died,
      and adds kopf's log to the failure message.
    """

    def __init__(self, args: Sequence[str], *, registry: Any, settings: Any, stop_timeout: float) -> None:
        self.args = list(args)
        self.registry = registry
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._result: click.testing.Result | None = None
        self._crash: BaseException | None = None
        self._log = _ListHandler()
        self._thread = threading.Thread(target=self._target, name='kopf-operator', daemon=True)

    # Mirrors kopf.testing.KopfRunner._target, plus the ready flag.
    def _target(self) -> None:
        from kopf import cli
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            controls = cli.CLIControls(registry=self.registry, settings=self.settings,
                                       stop_flag=self._stop, ready_flag=self.ready, loop=loop)
            self._result = click.testing.CliRunner().invoke(cli.main, self.args, obj=controls)
        except BaseException as e:
            self._crash = e
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._done.set()

    def start(self) -> KopfHandle:
        logging.getLogger().addHandler(self._log)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.stop_timeout)
        logging.getLogger().removeHandler(self._log)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def result(self) -> click.testing.Result | None:
        return self._result

    @property
    def output(self) -> str:
        return self._result.output if self._result is not None else ''

    @property
    def exit_code(self) -> int | None:
        return self._result.exit_code if self._result is not None else None

    @property
    def exception(self) -> BaseException | None:
        return self._crash or (self._result.exception if self._result is not None else None)

    def logs(self, level: int = logging.DEBUG) -> str:
        formatter = logging.Formatter('%(asctime)s %(levelname)-8s %(name)s: %(message)s')
        return '\n'.join(formatter.format(r) for r in list(self._log.records) if r.levelno >= level)

    def errors(self) -> list[logging.LogRecord]:
        return [r for r in list(self._log.records) if r.levelno >= logging.ERROR]

    def describe(self, tail: int = 200) -> str:
        lines = self.logs().splitlines()[-tail:]
        text = '\n'.join(lines)
        if self.exception is not None:
            text += f"\nkopf's exception: {self.exception!r}"
        failed = self.exception is not None or self.exit_code not in (0, None)
        if failed and self._result is not None and self._result.output:
            text += f"\nkopf's output (tail):\n{self._result.output[-10000:]}"
        return text

    def check(self) -> None:
        """Fail the test if the operator has exited (it must run until the block ends)."""
        if self._done.is_set():
            pytest.fail(f"The kopf operator exited prematurely (exit code {self.exit_code}).\n{self.describe()}",
                        pytrace=False)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1,
                 message: str | None = None) -> T:
        def guarded() -> T:
            self.check()
            return predicate()
        try:
            return wait_for(guarded, timeout=timeout, interval=interval, message=message)
        except pytest.fail.Exception as e:
            if self._done.is_set():
                raise
            pytest.fail(f"{e.msg}\n--- kopf's log (tail) ---\n{self.describe()}", pytrace=False)


def _is_path(target: str) -> bool:
    return target.endswith('.py') or os.sep in target or os.path.exists(target)


@contextlib.contextmanager
def kopf_running(
        kube_api: KubeAPI,
        target: str | Sequence[str] | None = None,
        *,
        namespace: str | Sequence[str] | None = 'default',
        clusterwide: bool = False,
        standalone: bool = True,
        registry: Any = None,
        settings: Any = None,
        extra_args: Sequence[str] = (),
        verbose: bool = True,
        startup_timeout: float = 10.0,
        stop_timeout: float = 15.0,
        fail_on_errors: bool = True,
        wait_watching: Sequence[str] = (),
        env: dict[str, str] | None = None,
) -> Iterator[KopfHandle]:
    """
    Run kopf (``kopf run --standalone``) against ``kube_api`` in a background thread.
    With ``standalone=False``, kopf's peering is on: create its peering CRDs first.

    ``target``: a path to an operator file (re-executed into a fresh registry on every run),
    or an importable module name (``pkg.handlers``; imported once, its handlers stay in kopf's
    global default registry, which is used for the run), or a list of such (do not mix the two
    kinds: paths would then register into the global registry too). ``registry=`` overrides;
    with ``target=None``, only the handlers of the given ``registry`` run (handlers defined in the test).
    Connection: ``KUBECONFIG`` points to ``kube_api.kubeconfig_path`` during the run, so kopf's
    default login and ``kubernetes.config.load_kube_config()`` in the operator both reach the emulator.

    The block waits until the operator's startup handlers are done (and, if ``wait_watching``
    lists resources, until kopf watches them). On exit, kopf is stopped; the test fails
    if kopf crashed/exited early, or (with ``fail_on_errors``) if anything logged ERROR or worse.
    """
    import kopf
    import kubernetes.client
    targets = [target] if isinstance(target, str) else list(target or [])
    paths = [t for t in targets if _is_path(t)]
    modules = [t for t in targets if not _is_path(t)]

    original_registry = kopf.get_default_registry()
    if registry is None:
        if modules:
            for module in modules:  # handlers register into the global default registry on import
                importlib.import_module(module)
            registry = original_registry
        else:
            try:
                from kopf._core.intents.registries import SmartOperatorRegistry
                registry = SmartOperatorRegistry()  # with the default login handlers
            except ImportError:  # pragma: no cover
                registry = kopf.OperatorRegistry()
    settings = settings if settings is not None else kopf.OperatorSettings()

    args = ['run', '--standalone'] if standalone else ['run']
    if verbose:
        args.append('--verbose')
    if clusterwide:
        args.append('--all-namespaces')
    else:
        for ns in ([namespace] if isinstance(namespace, str) else list(namespace or [])):
            args.extend(['--namespace', ns])
    args.extend(extra_args)
    args.extend(paths)
    for module in modules:
        args.extend(['-m', module])

    saved_env = {key: os.environ.get(key) for key in
                 {'KUBECONFIG', 'KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KOPF_RUN_NAMESPACE'} | set(env or {})}
    saved_config = kubernetes.client.Configuration._default
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    asyncio_logger = logging.getLogger('asyncio')
    saved_asyncio = (asyncio_logger.propagate, list(asyncio_logger.handlers))
    saved_sys_path = list(sys.path)

    # NB: kubernetes.config reads $KUBECONFIG once, at import time: patch its module-level default too.
    import kubernetes.config.kube_config as kube_config_module
    saved_kubeconfig_default = kube_config_module.KUBE_CONFIG_DEFAULT_LOCATION
    kube_config_module.KUBE_CONFIG_DEFAULT_LOCATION = kube_api.kubeconfig_path
    os.environ['KUBECONFIG'] = kube_api.kubeconfig_path
    for key in ('KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'KOPF_RUN_NAMESPACE'):
        os.environ.pop(key, None)
    os.environ.update(env or {})

    handle = KopfHandle(args, registry=registry, settings=settings, stop_timeout=stop_timeout)
    handle.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not handle.ready.wait(0.05):
            handle.check()
            if time.monotonic() > deadline:
                pytest.fail(f"kopf did not start in {startup_timeout}s.\n{handle.describe()}", pytrace=False)
        for ref in wait_watching:
            qualified = kube_api.call(lambda: kube_api.emulator.resolve(ref).qualified)
            handle.wait_for(lambda: any(w['resource'] == qualified for w in kube_api.watches()),
                            timeout=startup_timeout, message=f"kopf watching {ref}")
        yield handle
        handle.check()
    finally:
        handle.stop()
        kopf.set_default_registry(original_registry)
        kubernetes.client.Configuration._default = saved_config
        kube_config_module.KUBE_CONFIG_DEFAULT_LOCATION = saved_kubeconfig_default
        root.setLevel(saved_level)
        root.handlers[:] = saved_handlers
        asyncio_logger.propagate, asyncio_logger.handlers[:] = saved_asyncio[0], saved_asyncio[1]
        sys.path[:] = saved_sys_path
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    if handle.alive:
        pytest.fail(f"kopf did not stop within {stop_timeout}s.\n{handle.describe()}", pytrace=False)
    if handle.exception is not None or handle.exit_code not in (0, None):
        pytest.fail(f"kopf failed (exit code {handle.exit_code}): {handle.exception!r}\n{handle.describe()}",
                    pytrace=False)
    if fail_on_errors and handle.errors():
        pytest.fail(f"kopf logged errors:\n{handle.logs(logging.ERROR)}\n--- full log (tail) ---\n{handle.describe()}",
                    pytrace=False)


@pytest.fixture()
def run_kopf(kube_api: KubeAPI) -> Callable[..., contextlib.AbstractContextManager[KopfHandle]]:
    """``with run_kopf(target, namespace='default', ...) as kopf:`` — see :func:`kopf_running`."""
    def runner(target: str | Sequence[str] | None = None, **kwargs: Any) -> contextlib.AbstractContextManager[KopfHandle]:
        return kopf_running(kube_api, target, **kwargs)
    return runner


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', "kube: runs kopf against the kmock-based test Kubernetes API")
