"""Asynchronous ingestion from MQTT and Modbus TCP into the stores."""
