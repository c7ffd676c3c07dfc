"""doit entry point: ``doit`` builds the bundled example app in .flash-template/.

    doit                      # build .flash-template/
    doit app=path/to/app      # build another app
    doit list                 # the phases: files, stage, scan, manifest, lock, install, handlers, archive
    doit python=3.11 no_deps=1 exclude=scipy,pandas output=my.tar.gz

An app's own dodo.py can do the same in two lines:

    from flash_tasks.graph import dodo_namespace
    globals().update(dodo_namespace("."))
"""

from doit import get_var

from flash_tasks.graph import dodo_namespace

globals().update(
    dodo_namespace(
        get_var("app", ".flash-template"),
        python_version=get_var("python", None),
        no_deps=get_var("no_deps", "") not in ("", "0", "false"),
        exclude=get_var("exclude", ""),
        output=get_var("output", "artifact.tar.gz"),
    )
)
