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
from audiosort.heads import head_of
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
            f"--resume: TF_CONFIG names {n_workers} workers, and a multi-worker run cannot resume "
            "(its optimizer state is not saved); start afresh with --overwrite"
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
    """``model.fit`` for one worker of a ``TF_CONFIG`` cluster: the same callbacks, called at the same points.

    Every worker runs this same loop; each collective op (variable creation,
    gradient all-reduce, the logged means) is therefore called by all workers
    in the same order.

    - Puzzles: each worker draws its own stream (``batches``, seeded by its
      index). ``experimental_distribute_dataset`` (auto-sharding off) splits
      each batch into one slice per replica of the cluster and feeds this
      worker's replicas one slice each a step, so a step trains on
      ``batch_size`` puzzles over the whole cluster, the same global batch as
      on one machine.
    - Step: the per-puzzle loss (the mean of the terms of the head's loss, as
      ``compile`` got it) is divided by the global batch; the optimizer sums
      the gradients over all replicas. The trainable weights stay identical
      on every worker; BatchNormalization's moving statistics are each
      replica's own estimate, as under ``MirroredStrategy``.
    - Logs: after each step the callbacks get that step's all-reduced
      ``loss`` and the head's per-puzzle metrics (its registry entry,
      :func:`audiosort.heads.head_of`); after each epoch, the epoch's means
      and the val means (each replica scores its share of the val puzzles;
      the sums are all-reduced), under the names ``fit`` uses. Every worker thus logs the
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
    import tensorflow as tf

    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
    head_loss = model.loss  # the head's own loss, as compile got it
    head_metrics = head_of(model).metrics()
    names = ["loss", *head_metrics]

    def puzzle_stats(chunks, order, training):
        """Per puzzle: loss (mean of the loss terms), then each of the head's metrics: (b, len(names)) float32."""
        outputs = tf.cast(model(chunks, training=training), tf.float32)
        per_puzzle = [tf.reduce_mean(head_loss.call(order, outputs), axis=-1)]
        per_puzzle += [tf.cast(metric(order, outputs), tf.float32) for metric in head_metrics.values()]
        return tf.stack(per_puzzle, axis=-1)

    # The optimizer's gradient all-reduce stays outside XLA: XLA compiles no collective op on CPU.
    @tf.function(jit_compile=model.jit_compile)
    def stats_and_gradients(chunks, order):
        with tf.GradientTape() as tape:
            stats = puzzle_stats(chunks, order, training=True)
            loss = tf.nn.compute_average_loss(stats[:, 0], global_batch_size=batch_size)
            scaled_loss = model.optimizer.scale_loss(loss)
        return stats, tape.gradient(scaled_loss, model.trainable_variables)

    def replica_step(chunks, order):
        stats, gradients = stats_and_gradients(chunks, order)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return tf.reduce_sum(stats, axis=0) / batch_size

    @tf.function
    def train_step(iterator):
        """Loss and metrics of the step's global batch, the same on every worker: (len(names),)."""
        return strategy.reduce("SUM", strategy.run(replica_step, args=next(iterator)), axis=None)

    def replica_val_sums(chunks, order):
        replica = tf.distribute.get_replica_context()
        mine = tf.range(replica.replica_id_in_sync_group, tf.shape(order)[0], replica.num_replicas_in_sync)
        return tf.reduce_sum(puzzle_stats(tf.gather(chunks, mine), tf.gather(order, mine), training=False), axis=0)

    @tf.function
    def val_sums(chunks, order):
        """Sums of loss and metrics over the puzzles of one val batch: (len(names),)."""
        return strategy.reduce("SUM", strategy.run(replica_val_sums, args=(chunks, order)), axis=None)

    _, n_chunks, chunk_samples = val.chunks.shape
    signature = (
        tf.TensorSpec((batch_size, n_chunks, chunk_samples), tf.int16),
        tf.TensorSpec((batch_size, n_chunks), tf.int32),
    )
    dataset = tf.data.Dataset.from_generator(lambda: batches, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # repeat() makes the stream's cardinality infinite, so no step all-reduces "has every worker got data?".
    iterator = iter(strategy.experimental_distribute_dataset(dataset.repeat().with_options(options)))

    callback_list = keras.callbacks.CallbackList(
        list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch, verbose=0
    )
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        train_means = np.zeros(len(names))
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            step_means = train_step(iterator).numpy()
            train_means += step_means
            callback_list.on_train_batch_end(step, dict(zip(names, map(float, train_means / (step + 1)))))
            if model.stop_training:
                break
        steps_done = step + 1
        val_means = sum((
            val_sums(val.chunks[start : start + batch_size], val.order[start : start + batch_size]).numpy()
            for start in range(0, len(val), batch_size)
        ), np.zeros(len(names))) / len(val)
        logs = dict(zip(names, map(float, train_means / steps_done)))
        logs.update({f"val_{name}": float(value) for name, value in zip(names, val_means)})
        callback_list.on_epoch_end(epoch, logs)
        if verbose:
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
        if model.stop_training:
            break
    callback_list.on_train_end()
