"""The lakehouse: everything of a source that lives under its catalog (tables, staging, locks), behind `Lakehouse`."""
