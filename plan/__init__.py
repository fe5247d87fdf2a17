"""The compiled plan: immutable, versioned models shared by the compiler and the runtime."""

from .io import PlanError, load_plan, plan_from_json, plan_json_schema, plan_to_json, save_plan
from .models import *  # noqa: F401,F403  (the models are the public API)
from .models import PLAN_VERSION, Plan

__all__ = [
    "PLAN_VERSION",
    "Plan",
    "PlanError",
    "load_plan",
    "save_plan",
    "plan_from_json",
    "plan_to_json",
    "plan_json_schema",
    "Cluster", "NodeSpec", "FullMeshTopology", "StaticTopology", "ClientServerTopology", "HyParViewTopology",
    "PhiDetector", "SwimDetector", "Secret", "TLS", "Security",
    "FieldType", "MessageField", "MessageType", "Channel",
    "ComponentRef", "Supervision", "Distribution", "StateEntry", "Checkpoint", "State", "Partition",
    "ScalingRule", "Predictor", "Scaling", "Backpressure", "SpawnRule", "Ecosystem",
]
