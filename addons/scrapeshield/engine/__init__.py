"""The decision engine as a pipeline of named stages (see `stages.py`); `Engine` runs them."""
from .core import Engine
from .stages import ClearanceCheck, fail_decision
from .trace import BucketTrace, DecisionTrace, RuleOutcome, RuleTrace, ScoreTrace, TraceRecorder

__all__ = ["BucketTrace", "ClearanceCheck", "DecisionTrace", "Engine", "RuleOutcome", "RuleTrace", "ScoreTrace",
           "TraceRecorder", "fail_decision"]
