"""The simulated fleet: the simulator, the fleet driver, the demo's acts, synthetic state."""
