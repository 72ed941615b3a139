"""What every part of Cellar shares: settings, metadata models, status enums, errors, CLI."""
