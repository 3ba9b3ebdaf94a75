"""Training over devices and machines: the strategy, the ``TF_CONFIG`` cluster, and its training loop.

One machine trains with ``model.fit`` (over several GPUs through
``MirroredStrategy``). The workers of a ``TF_CONFIG`` cluster train with
:func:`fit_multi_worker` instead, because Keras 3.15's ``fit`` fails under
``MultiWorkerMirroredStrategy`` (tensorflow/tensorflow#72388). That loop
drives the same Keras callbacks ``fit`` would (:func:`audiosort.callbacks.run_callbacks`),
so both paths write one run folder by one policy: history columns,
checkpoints, early stopping and the non-finite stop are defined once, in
callbacks.py. docs/run-folder.md describes a cluster run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from audiosort.data.puzzles import Puzzles
from audiosort.errors import ConfigError
from audiosort.metrics import ORDER_DECODINGS


def cluster_role() -> tuple[int, int]:
    """(this process's index, number of workers) in the cluster ``TF_CONFIG`` names; (0, 1) without one.

    Workers are the cluster's "chief" task then its "worker" tasks, indexed in
    that order, so index 0 is the chief (task type "chief", else worker 0).

    Raises
    ------
    ConfigError
        ``TF_CONFIG`` is not JSON, or its task is not among the cluster's.
    """
    text = os.environ.get("TF_CONFIG") or "{}"
    try:
        tf_config = json.loads(text)
        cluster = tf_config.get("cluster", {})
        tasks = [(kind, index) for kind in ("chief", "worker") for index in range(len(cluster.get(kind, [])))]
        if len(tasks) < 2:
            return 0, 1
        return tasks.index((tf_config["task"]["type"], tf_config["task"]["index"])), len(tasks)
    except (ValueError, TypeError, AttributeError, KeyError):
        raise ConfigError(
            f"TF_CONFIG = {text!r} is not JSON naming a cluster of chief/worker addresses and this process's task in it"
        ) from None


def checked_cluster_role(*, resume: bool) -> tuple[int, int]:
    """:func:`cluster_role`, checked for training: a cluster needs the TensorFlow backend and cannot ``resume``.

    Raises
    ------
    ConfigError
        ``TF_CONFIG`` is malformed, names several workers on another backend,
        or names several workers while ``resume`` is asked for.
    """
    worker_index, n_workers = cluster_role()
    if n_workers > 1 and keras.backend.backend() != "tensorflow":
        raise ConfigError(
            f"TF_CONFIG names {n_workers} workers, but multi-worker training needs the TensorFlow backend, "
            f"not KERAS_BACKEND={keras.backend.backend()}"
        )
    if n_workers > 1 and resume:
        raise ConfigError(
            f"resume=True: TF_CONFIG names {n_workers} workers, and a multi-worker run cannot resume "
            "(its optimizer state is not saved); start afresh with overwrite=True"
        )
    return worker_index, n_workers


def default_strategy():
    """The strategy training uses when given none (TensorFlow backend; None on others).

    ``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names
    several chief/worker tasks (call this before any other TensorFlow op: it
    configures the runtime, and waits until every worker has started), else
    ``tf.distribute.MirroredStrategy`` over every GPU when TensorFlow sees more
    than one, else None.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    _, n_workers = cluster_role()
    import tensorflow as tf

    if n_workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus]) if len(gpus) > 1 else None


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` spans several machines (so ``model.fit`` cannot run it)."""
    if strategy is None:
        return False
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit_multi_worker(
    model: keras.Model,
    strategy,
    batches: Iterator[tuple[np.ndarray, np.ndarray]],
    *,
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
    val: Puzzles,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int | str,
) -> None:
    """``model.fit`` for one worker of a ``TF_CONFIG`` cluster: the same step, the same callbacks at the same points.

    Every worker runs this same loop; each collective op (variable creation,
    gradient all-reduce, the logged means) is therefore called by all workers
    in the same order.

    - Puzzles: each worker draws its own stream (``batches``, seeded by its
      index). ``experimental_distribute_dataset`` (auto-sharding off) splits
      each batch into one slice per replica of the cluster and feeds this
      worker's replicas one slice each a step, so a step trains on
      ``batch_size`` puzzles over the whole cluster, the same global batch as
      on one machine.
    - Step: Keras's own ``model.train_step``, the step ``fit`` runs, on each
      replica's slice: the compiled loss, scaled by 1/replicas, and the
      optimizer sums the gradients over all replicas. The trainable weights
      stay identical on every worker; BatchNormalization's moving statistics
      are each replica's own estimate, as under ``MirroredStrategy``.
    - Logs: after each step the callbacks get the epoch's running means of
      ``loss`` and the compiled metrics, averaged over all replicas; after
      each epoch, those and the val means from ``model.test_step`` (each
      replica scores its share of the val puzzles; the metrics' sums are
      all-reduced), under the names ``fit`` uses. Every worker thus logs the
      same history and takes the same early-stopping decision.

    Parameters
    ----------
    model : keras.Model
        Compiled in ``strategy``'s scope (:func:`audiosort.train.compiled_model`).
    batches : iterator of (chunks, order)
        ``chunks [shape=(batch_size, n, L), dtype=int16]``, ``order [shape=(batch_size, n)]``, endless.
    val : Puzzles
        The val puzzles, the same on every worker.
    callbacks : sequence of keras.callbacks.Callback
        What ``fit`` would get; ``model.stop_training`` ends the loop as it ends ``fit``: a stop
        during an epoch still validates and ends that epoch (``on_epoch_end``), then training ends.
    verbose : int or "auto"
        Prints one line per epoch unless 0.
    """
    with strategy.scope():
        # What fit builds before its first step: the compiled loss and metrics' state, and the optimizer's.
        model._symbolic_build(data_batch=(val.chunks[:batch_size], val.order[:batch_size]))
    train_step, val_logs = _step_functions(model, strategy, val, batch_size=batch_size)
    iterator = _distributed_batches(strategy, batches, batch_size=batch_size, puzzle_shape=val.chunks.shape[1:])
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch, verbose=0
    )
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        model.reset_metrics()
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = train_step(iterator)
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        logs = {**logs, **{f"val_{name}": value for name, value in val_logs().items()}}
        callback_list.on_epoch_end(epoch, logs)
        if verbose:
            _print_epoch(epoch, epochs, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


def _step_functions(model: keras.Model, strategy, val: Puzzles, *, batch_size: int):
    """``train_step(iterator)``: one step of Keras's ``model.train_step`` on every replica, its logs as floats;
    ``val_logs()``: ``model.test_step`` over ``val``, the loss and metrics means over all of it.
    """
    import tensorflow as tf

    # Not jit-compiled: the optimizer's gradient all-reduce runs inside the step, and XLA compiles no
    # collective op on CPU.
    @tf.function
    def distributed_train_step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    def replica_test_step(chunks, order):
        replica = tf.distribute.get_replica_context()
        mine = tf.range(replica.replica_id_in_sync_group, tf.shape(order)[0], replica.num_replicas_in_sync)
        model.test_step((tf.gather(chunks, mine), tf.gather(order, mine)))

    @tf.function
    def distributed_test_step(chunks, order):
        strategy.run(replica_test_step, args=(chunks, order))

    # Every val batch gives each replica at least one puzzle: a short last batch joins the one before.
    bounds = list(range(0, len(val), batch_size)) + [len(val)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < strategy.num_replicas_in_sync:
        del bounds[-2]

    def val_logs():
        model.reset_metrics()
        for start, end in zip(bounds, bounds[1:]):
            distributed_test_step(val.chunks[start:end], val.order[start:end])
        return {name: float(value) for name, value in model.get_metrics_result().items()}

    def train_step(iterator):
        return {name: float(value) for name, value in distributed_train_step(iterator).items()}

    return train_step, val_logs


def _distributed_batches(strategy, batches: Iterator, *, batch_size: int, puzzle_shape: tuple[int, int]):
    """``batches`` as a distributed dataset's iterator: each global batch split into one slice per replica."""
    import tensorflow as tf

    n_chunks, chunk_samples = puzzle_shape
    signature = (
        tf.TensorSpec((batch_size, n_chunks, chunk_samples), tf.int16),
        tf.TensorSpec((batch_size, n_chunks), tf.int32),
    )
    dataset = tf.data.Dataset.from_generator(lambda: batches, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # repeat() makes the stream's cardinality infinite, so no step all-reduces "has every worker got data?".
    return iter(strategy.experimental_distribute_dataset(dataset.repeat().with_options(options)))


def _print_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
    """The epoch's line: loss, val loss, val exact order as eval decodes it and by argmax, chance."""
    # run_callbacks' DecodedValScores has added val scored as eval scores it (hungarian or path).
    keys = {name: f"val_{name}_exact_accuracy" for name in ORDER_DECODINGS}
    exact = [f"{name} {logs[key]:.3f}" for name, key in keys.items() if key in logs]
    exact.append(f"argmax {logs['val_exact_accuracy']:.3f}")
    chance = f" (chance {logs['val_exact_chance']:.3f})" if "val_exact_chance" in logs else ""
    print(
        f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f}, val_loss {logs['val_loss']:.4f}, "
        f"val exact {', '.join(exact)}{chance}",
        flush=True,
    )
