"""What a build checks before its version serves: golden queries (`quality_gate.py`) and the
abstain threshold picked for its FAQ (`faq_calibration.py`)."""
