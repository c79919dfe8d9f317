"""Ray-based orchestrator that pretrains JEPA models in FLOP-budgeted sweeps."""
import envs  # noqa: F401  first: settles MUJOCO_GL (a probed GL backend) before RLlib or anything imports dm_control
