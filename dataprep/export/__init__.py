"""A build written again in the layouts other tools read (`dataprep export ...`)."""
