"""The names every layer agrees on: the tasks, and the key under which a checkpoint records its task.

They live at the bottom so that a model, a config check and the task registry can all read them without
importing each other (torchtune keeps ``training.MODEL_KEY`` low for the same reason).
"""

IMAGE_TASK = "image_classification"
TABULAR_TASK = "tabular"
# The table of tasks, one line each: name -> "module:Class". A string, not an import: the class (and its training
# libraries) is imported only when the task runs (visiontrain.registry.task_class), and config checks below it can
# still list the names. A third task is its folder beside image/ and tabular/, and one line here.
TASK_CLASSES = {IMAGE_TASK: "visiontrain.image.task:ImageTask",
                TABULAR_TASK: "visiontrain.tabular.task:TabularTask"}
TASK_NAMES = tuple(TASK_CLASSES)  # the values of a training config's ``task``
TASK_KEY = "visiontrain_task"  # where a checkpoint records its task's name
