"""The dashboard: one page with the user, navigation and every view, without page reloads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as w

from pico_nb.schemas import ExperimentRecord, RunRecord
from pico_nb.text import esc
from pico_nb.widgets import default_lab
from pico_nb.widgets.compare import CompareView
from pico_nb.widgets.detail import ExperimentDetail
from pico_nb.widgets.experiment_list import ExperimentList
from pico_nb.widgets.form import ExperimentForm
from pico_nb.widgets.notifications import NotificationsView
from pico_nb.widgets.page_address import parse_route, route_html
from pico_nb.widgets.resources import ResourcesView
from pico_nb.widgets.routes import hub_links
from pico_nb.widgets.run_watch import RunWatcher
from pico_nb.widgets.style import MessageBar, guarded, styled, stylesheet

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

VIEW_PAGES = {"new": "New experiment", "resources": "Resources", "notifications": "Notifications"}
PAGES = ("Experiments", "New experiment", "Compare", "Resources", "Notifications")


class Dashboard(w.VBox):
    """The analyst's app: list, form, detail, compare and resources behind one header."""

    def __init__(self, lab: LabAPI | None = None, *, routing: bool = False) -> None:
        self.lab = lab or default_lab()
        self.routing = routing  # the app owns the page's address (Voila), not a Lab cell
        self.router = styled(w.HTML(), "pico-router")
        self.router.layout.display = "none"
        user = self.lab.user
        admin = ' <span class="pico-badge pico-admin">admin</span>' if user.is_admin else ""
        header = styled(
            w.HBox(
                [
                    w.HTML(
                        '<span class="pico-title">PICO workbench</span> '
                        f'<span class="pico-muted" style="color:#94a3b8">'
                        f"{esc(self.lab.spec.title)}</span>"
                    ),
                    w.HTML(
                        f'<span class="pico-user">{esc(user.username)}</span>{admin}'
                        + "".join(
                            f'<a href="{esc(url)}" target="_top">{esc(label)}</a>'
                            for label, url in hub_links()
                        )
                    ),
                ]
            ),
            "pico-header",
        )
        self.nav = w.ToggleButtons(options=PAGES, style={"button_width": "auto"})
        self._quiet = False
        self.nav.observe(self._navigate, "value")
        self.messages = MessageBar()
        self.content = w.VBox(layout=w.Layout(width="100%"))
        self.list_view = ExperimentList(self.lab)
        self.list_view.on_open(self.open_experiment)
        self.list_view.on_compare(self.compare)
        self.form = ExperimentForm(self.lab)
        self.form.on_saved(self._saved)
        self.form.on_cancel(self._back)
        self.compare_view = CompareView(lab=self.lab)
        self.compare_view.observe(lambda _: self._compare_route(), "picked_runs")
        self.resources = ResourcesView(self.lab)
        self.notifications = NotificationsView(self.lab)
        self.watcher = RunWatcher(self.lab)
        self.detail: ExperimentDetail | None = None
        self.back = w.Button(description="All experiments", icon="arrow-left")
        self.back.on_click(lambda _: self.show_page("Experiments"))
        super().__init__(
            [
                stylesheet(),
                self.router,
                header,
                styled(self.nav, "pico-nav"),
                self.messages,
                self.content,
                self.watcher,
            ]
        )
        styled(self, "pico", "pico-dashboard")
        self.layout.max_width = "1280px"
        for control in (self.list_view.search, self.list_view.status, self.list_view.scope):
            control.observe(lambda _: self._list_route(push=False), "value")
        self.show_page("Experiments")

    def close(self) -> None:
        """Closing the app stops every view's timers and threads."""
        for view in (self.list_view, self.resources, self.detail, self.watcher):
            if view is not None:
                view.close()
        super().close()

    # ------------------------------------------------------------------ navigation

    def _navigate(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self.show_page(change["new"])

    def _unselect(self) -> None:
        """On a sub-page no tab is selected, so clicking "Experiments" goes back to the list."""
        self._quiet = True
        try:
            self.nav.value = None
        finally:
            self._quiet = False

    # --------------------------------------------------------------------- routes

    def _set_route(self, route: dict[str, str], title: str, push: bool = True) -> None:
        """Write the view into the page's address and title (only when the app owns the page)."""
        if self.routing:
            self.router.value = route_html(route, title, push)

    def _list_route(self, push: bool = True) -> None:
        """The list's address keeps its filters, so a reload or a shared link shows the same."""
        if self.content.children != (self.list_view,):
            return
        lv = self.list_view
        route = {"view": "list", "search": lv.search.value.strip(), "status": lv.status.value}
        if lv.scope.value != lv.scope.options[-1][1]:
            route["scope"] = lv.scope.value
        self._set_route({k: v for k, v in route.items() if v}, "Experiments", push)

    @guarded
    def open_route(self, query: str) -> None:
        """Show what an address names: the list with filters, an experiment, a run, compare."""
        route = parse_route(query)
        lv = self.list_view
        if route.status in [v for _, v in lv.status.options]:
            lv.status.value = route.status
        if route.scope in [v for _, v in lv.scope.options]:
            lv.scope.value = route.scope
        lv.search.value = route.search
        if route.experiment is not None:
            detail = self.open_experiment(route.experiment)
            if detail is not None and route.run is not None:
                detail.run_picker.value = route.run
        elif route.view == "compare" and route.compare:
            self.compare(list(route.compare), list(route.runs))
        elif route.view == "compare" and route.runs:
            self.compare_runs(list(route.runs))
        elif route.view in VIEW_PAGES:
            self.show_page(VIEW_PAGES[route.view])
        else:
            self.show_page("Experiments")

    def _show(self, *views: w.Widget) -> None:
        """Swap the content; only the view on screen refreshes itself."""
        self.list_view.active = self.list_view in views
        self.resources.active = self.resources in views
        if self.detail is not None and self.detail not in views:
            self.detail.close()
            self.detail = None
        self.content.children = views

    def show_page(self, page: str) -> None:
        """Show one of the top-level pages, as the navigation buttons do."""
        self.messages.clear()
        if self.nav.value != page:
            self.nav.value = page  # comes back through _navigate
            return
        if page == "Experiments":
            self.list_view.refresh()
            self._show(self.list_view)
            self._list_route()
        elif page == "New experiment":
            self.form.clear()
            self._show(self.form)
            self._set_route({"view": "new"}, "New experiment")
        elif page == "Compare":
            self._show(self.compare_view)
            self._set_route({"view": "compare"}, "Compare")
        elif page == "Resources":
            self.resources.refresh()
            self._show(self.resources)
            self._set_route({"view": "resources"}, "Resources")
        elif page == "Notifications":
            self.notifications.refresh()
            self._show(self.notifications)
            self._set_route({"view": "notifications"}, "Notifications")

    @guarded
    def open_experiment(self, experiment_id: int) -> ExperimentDetail:
        """The detail page of one experiment, with its latest run."""
        detail = ExperimentDetail(experiment_id, self.lab)
        detail.on_edit(lambda i: self.edit(i, clone=False))
        detail.on_clone(lambda i: self.edit(i, clone=True))
        detail.on_deleted(self._deleted)
        detail.on_compare_runs(self.compare_runs)
        self._show(self.back, detail)
        self._unselect()
        self.detail = detail
        detail.observe(lambda _: self._detail_route(detail), "run_id")
        self._detail_route(detail)
        return detail

    def _detail_route(self, detail: ExperimentDetail) -> None:
        """An experiment's address names the run on show, so a reload stays on that run."""
        if detail is not self.detail:
            return
        route = {"experiment": str(detail.experiment_id)}
        title = f"Experiment {detail.experiment_id}"
        if detail.run_id is not None:
            number = dict((v, k) for k, v in detail.run_picker.options).get(detail.run_id, "")
            route["run"] = str(detail.run_id)
            title = f"{number} · {title}" if number else title
        self._set_route(route, title)

    @guarded
    def edit(self, experiment_id: int, clone: bool = False) -> None:
        """The form, filled from an experiment, to edit or clone it."""
        self.form.load(self.lab.get_experiment(experiment_id), clone=clone)
        self._show(self.back, self.form)
        self._unselect()
        self._set_route(
            {"experiment": str(experiment_id), "view": "clone" if clone else "edit"},
            f"{'Clone' if clone else 'Edit'} experiment {experiment_id}",
        )

    def compare(self, experiment_ids: list[int], run_ids: list[int] | None = None) -> None:
        """The compare page for the experiments ticked in the list."""
        self.nav.value = "Compare"
        self.compare_view.compare(experiment_ids, run_ids)
        self._set_route(
            {"view": "compare", "compare": ",".join(str(i) for i in experiment_ids)}, "Compare"
        )

    def _compare_route(self) -> None:
        """Runs picked on the compare page replace its address, so a reload keeps them."""
        view = self.compare_view
        route = {"view": "compare", "runs": ",".join(map(str, view.picked_runs))}
        if view.experiment_ids:
            route["compare"] = ",".join(map(str, view.experiment_ids))
        self._set_route(route, "Compare runs", push=False)

    def compare_runs(self, run_ids: list[int]) -> None:
        """The compare page for chosen runs, e.g. two runs of one experiment."""
        self.nav.value = "Compare"
        self.compare_view.compare_runs(run_ids)
        self._set_route({"view": "compare", "runs": ",".join(map(str, run_ids))}, "Compare runs")

    # -------------------------------------------------------------------- events

    def _saved(self, exp: ExperimentRecord, run: RunRecord | None) -> None:
        """After Save the experiment's page opens, following the run after Save & Run."""
        detail = self.open_experiment(exp.id)
        if detail is not None:
            detail.messages.info(
                f"saved experiment {exp.id}" + (f", run {run.number} started" if run else "")
            )

    def _back(self) -> None:
        """Cancel returns to where the form was opened from."""
        if self.form.mode == "create":
            self.show_page("Experiments")
        else:
            self.open_experiment(self.form.loaded_id())

    def _deleted(self, experiment_id: int) -> None:
        self.show_page("Experiments")
        self.messages.info(f"experiment {experiment_id} deleted")
