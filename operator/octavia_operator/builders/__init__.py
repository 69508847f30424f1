"""Pure builders: functions from spec/status to desired objects and files."""
