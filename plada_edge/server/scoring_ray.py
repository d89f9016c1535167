"""Scale-out scoring on Ray (``plada-edge score --engine ray``): same chunks, same files, same bytes.

Scoring is the server's big job: every reference image goes through the teacher. Ray is the
idiomatic engine for batch inference on an existing cluster, so plada-edge uses it directly and
schedules nothing itself:

- the work is the local scorer's chunks (plada_edge.server.scoring), so a Ray run and a local run
  can resume each other's output;
- each actor opens the reference pack by memmap (shared storage or a per-node copy at the same
  path), checks its fingerprint, and builds one runner in its constructor (sessions cannot be
  pickled) with intra-op threads set to its CPU share: onnxruntime, or, for an actor that reserves
  a GPU on a node whose onnxruntime has no CUDA provider, the torch engine on that GPU
  (plada_edge.server.engines, the same rule as a local run);
- each actor writes its finished chunks atomically, with the global index range inside the chunk
  (Ray does not keep order; nothing is inferred from it);
- finished chunks are skipped; a chunk whose actor died is retried on a fresh actor; the driver
  shows one progress bar and joins the chunks exactly as the local engine does.

Ray is an optional extra (``pip install "plada-edge[ray]"``); the local engine never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_RETRIES = 3


def _scorer_class(ray):
    @ray.remote
    class Scorer:
        def __init__(self, teacher: str, pack_path: str, fingerprint: str, threads: int, config):
            from ..core.errors import PackError
            from ..core.reference import ReferencePack
            from .engines import make_runner
            from .teacher import onnx_metadata

            self.pack = ReferencePack.open(pack_path)
            if self.pack.fingerprint != fingerprint:
                raise PackError(
                    f"node {os.uname().nodename}: pack at {pack_path} is {self.pack.fingerprint[:16]}…, "
                    f"the driver's is {fingerprint[:16]}…"
                )
            meta = onnx_metadata(teacher)
            self.plan = actor_plan(teacher, meta, config)
            self.runner = make_runner(self.plan, teacher, meta, self.pack.size, threads)

        def pid(self) -> int:
            return os.getpid()

        def score(self, out: str, c0: int, c1: int, batch_size: int, keep_logits: bool) -> tuple[int, int]:
            from .inference import score_chunk, write_chunk

            write_chunk(Path(out), c0, score_chunk(self.runner, self.pack, c0, c1, batch_size, keep_logits))
            return c0, c1

    return Scorer


def actor_plan(teacher, meta: dict, config):
    """An actor's engine, planned on its own node: a GPU actor scores on its GPU (device 0 under Ray)."""
    from dataclasses import replace

    from .engines import plan_engine

    if config.gpus_per_worker > 0 and not config.providers:
        return plan_engine(teacher, meta, replace(config, engine="local", device="cuda:0"))
    return plan_engine(teacher, meta, replace(config, engine="local", providers=",".join(ray_providers(config))))


def ray_providers(config) -> list[str]:
    """Providers for the actors: checked where they run, not on the driver (which may have no GPU).

    With ``gpus_per_worker`` > 0 Ray gives each actor its GPU as device 0 (CUDA_VISIBLE_DEVICES).
    """
    from ..core.devices import provider_names

    names = provider_names(config.providers) or (["CUDAExecutionProvider"] if config.gpus_per_worker > 0 else [])
    return [*dict.fromkeys([*names, "CPUExecutionProvider"])]


def score_chunks_on_ray(
    teacher,
    pack,
    out: Path,
    todo: list[int],
    config,
    progress: bool | None = None,
    on_started=None,
) -> dict:
    """Score the chunks starting at ``todo`` with Ray actors; every chunk file is written by an actor.

    ``config`` is the run's ScoreConfig (chunk, batch_size, keep_logits, address, workers).
    ``on_started(actors)`` is called once the actors exist (monitoring; the tests kill one there).
    Returns {"chunks": scored, "retried": chunks rerun after their actor died}.
    """
    try:
        import ray
    except ImportError:
        raise ImportError('the Ray engine needs Ray: pip install "plada-edge[ray]"') from None
    from ..core.progress import bar

    if not ray.is_initialized():
        ray.init(address=config.address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    workers = config.workers or max(1, cpus)
    chunk, batch_size, keep_logits = config.chunk, config.batch_size, config.keep_logits
    threads = max(1, cpus // workers)
    Scorer = _scorer_class(ray).options(num_cpus=threads, num_gpus=config.gpus_per_worker)
    args = (str(Path(teacher).resolve()), str(pack.path.resolve()), pack.fingerprint, threads, config)
    actors = [Scorer.remote(*args) for _ in range(min(workers, max(1, len(todo))))]
    queue = list(todo)
    retries: dict[int, int] = {}
    running = {}  # object ref -> (actor index, c0)

    def submit(i: int) -> None:
        c0 = queue.pop(0)
        ref = actors[i].score.remote(str(out.resolve()), c0, min(c0 + chunk, pack.n), batch_size, keep_logits)
        running[ref] = (i, c0)

    with bar("scoring (ray)", sum(min(chunk, pack.n - c0) for c0 in todo), progress, unit="img") as b:
        for i in range(len(actors)):
            if queue:
                submit(i)
        if on_started is not None:
            on_started(actors)
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            i, c0 = running.pop(done[0])
            try:
                c0, c1 = ray.get(done[0])
                b.advance(c1 - c0)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                retries[c0] = retries.get(c0, 0) + 1
                if retries[c0] > MAX_RETRIES:
                    raise RuntimeError(f"chunk at {c0} failed {MAX_RETRIES + 1} times; last error: {exc}") from None
                actors[i] = Scorer.remote(*args)  # a fresh actor replaces the dead one
                queue.insert(0, c0)
            if queue:
                submit(i)
    for a in actors:
        ray.kill(a)
    return {"chunks": len(todo), "retried": sum(retries.values())}
