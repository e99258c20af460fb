"""The training engine shared by ``distill`` and ``finetune``: objectives, loop, checkpoints, DDP."""

from nerkd.train.loop import DevSet, TrainResult, train
from nerkd.train.objective import BaseObjective, CEObjective, Objective

__all__ = ["BaseObjective", "CEObjective", "DevSet", "Objective", "TrainResult", "train"]
