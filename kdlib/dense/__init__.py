"""Seed 002's dense tasks (Task 2): distillation for 4x super-resolution and for edge detection.

An experiment in params.yaml's `dense` section trains a teacher, a student without KD (`scratch`) and the same
student distilled from the teacher (`kd`), each a DAG node (kdlib.dense.train), on data that one more node
prepares (kdlib.dense.data).
"""
