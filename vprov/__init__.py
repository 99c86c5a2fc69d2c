"""Vehicle provisioning stream processor: the domain core shared by the stream agents."""
