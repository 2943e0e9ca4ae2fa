"""The SignalProcessing operator: kopf handlers, the processing pipeline and its stages."""
