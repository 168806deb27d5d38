"""Where the stages run: the ECS worker's receive loop, the Lambda handler, the queue message
handlers both share, the health endpoint, and the ``vendor-onboarding`` command."""
