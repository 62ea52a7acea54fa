"""The job and batch as the outside world sees them (JSON models and builders), shared by the API's
responses, its event stream and the workers' signed callbacks: every reader gets the same shape and the
same masking, and the workers need not import the API to build a callback body."""
