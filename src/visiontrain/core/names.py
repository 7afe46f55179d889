"""The names every layer agrees on: the tasks, and the key under which a checkpoint records its task.

They live at the bottom so that a model, a config check and the task registry can all read them without
importing each other (torchtune keeps ``training.MODEL_KEY`` low for the same reason).
"""

IMAGE_TASK = "image_classification"
TABULAR_TASK = "tabular"
TASK_NAMES = (IMAGE_TASK, TABULAR_TASK)  # the values of a training config's ``task``
TASK_KEY = "visiontrain_task"  # where a checkpoint records its task's name
