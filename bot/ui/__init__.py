"""The Discord user interface of jobs: status rendering, job buttons, delivery and the status follower."""
