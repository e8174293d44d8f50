// The dashboard's behaviour, all of it: the Content-Security-Policy (script-src 'self') allows no
// inline script, no on* attribute and no eval, so pages carry data in markup and this file acts on it.
//  - canvas[data-chart]: a Chart.js chart from the JSON in the attribute (drawn on load and after htmx swaps)
//  - [data-copy="#id"]: a button copying the text of the element #id
//  - form[data-confirm]: asks before a plain (non-htmx) form is sent; htmx elements use hx-confirm
//  - htmx answers with an error status: shown in the #toast line
(function () {
  "use strict";

  const PALETTE = ["#1f4fd1", "#e8793a", "#2a9d8f", "#9b5de5", "#d62839", "#6c757d", "#e9c46a", "#264653"];

  function withColors(datasets) {
    return datasets.map(function (dataset, i) {
      const color = PALETTE[i % PALETTE.length];
      const line = dataset.type === "line";
      return Object.assign(
        {
          borderColor: color,
          backgroundColor: line ? color : color + "cc",
          borderWidth: line ? 2 : 0,
          pointRadius: line ? 3 : 0,
          spanGaps: false,
        },
        dataset
      );
    });
  }

  function drawChart(canvas) {
    if (typeof Chart === "undefined" || Chart.getChart(canvas)) {
      return;
    }
    let spec;
    try {
      spec = JSON.parse(canvas.dataset.chart);
    } catch (err) {
      console.warn("data-chart is not JSON", canvas, err);
      return;
    }
    const options = Object.assign(
      {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: spec.datasets.length > 1 } },
      },
      spec.options || {}
    );
    new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: withColors(spec.datasets) },
      options: options,
    });
  }

  function drawCharts(root) {
    const scope = root && root.querySelectorAll ? root : document;
    if (scope.matches && scope.matches("canvas[data-chart]")) {
      drawChart(scope);
    }
    scope.querySelectorAll("canvas[data-chart]").forEach(drawChart);
  }

  function forgetCharts(root) {
    if (typeof Chart === "undefined" || !root.querySelectorAll) {
      return;
    }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const chart = Chart.getChart(canvas);
      if (chart) {
        chart.destroy();
      }
    });
  }

  function toast(text) {
    const box = document.getElementById("toast");
    if (!box) {
      return;
    }
    box.textContent = text;
    box.hidden = false;
    window.clearTimeout(box.hideTimer);
    box.hideTimer = window.setTimeout(function () {
      box.hidden = true;
    }, 6000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
  });
  document.addEventListener("htmx:load", function (event) {
    drawCharts(event.detail.elt);
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (target && event.detail.shouldSwap) {
      forgetCharts(target);
    }
  });
  document.addEventListener("htmx:responseError", function (event) {
    const xhr = event.detail.xhr;
    const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
    const message = page.querySelector(".error, p");
    toast(message ? message.textContent.trim() : "The server answered " + xhr.status + ".");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached; try again.");
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) {
      return;
    }
    const source = document.querySelector(button.dataset.copy);
    if (!source || !navigator.clipboard) {
      return;
    }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      const label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () {
        button.textContent = label;
      }, 1500);
    });
  });

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
