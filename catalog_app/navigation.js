// Browser-side navigation for the catalog app, run once per tab in the app's own window (a
// same-origin component frame adds it as a <script> there; see catalog_app/navigation.py).
(function () {
  const app = window;
  if (app.__milanNavigation) return;
  app.__milanNavigation = true;
  const history = app.history;
  const push = history.pushState.bind(history);
  const replace = history.replaceState.bind(history);
  // Params whose change is a step a person may want to go Back from: a new search, another unit.
  const STEPS = ["q", "unit", "image"];
  // Streamlit's page_link first pushes the target's query on the current page, then the target page
  // with that same query: two pushes for one click. The second is recognised by what it is (another
  // page, the query just pushed), not by timing: under load the two came 0.55 s apart, and a time
  // window left the half-way entry in the history, where Back then landed (the search page holding
  // the image's query).
  let queryPushed = null; // the location the last push made by changing only the query, if it was

  function sameQuery(url, search) {
    return new URL(url, app.location.href).search === search;
  }
  function params(url) {
    return new URL(url, app.location.href).searchParams;
  }
  function isStep(url) {
    const next = params(url), now = new URLSearchParams(app.location.search);
    return STEPS.some((name) => (next.get(name) || "") !== (now.get(name) || ""));
  }
  function toTop() {
    app.setTimeout(() => {
      const main = app.document.querySelector('[data-testid="stMain"]');
      if (main) main.scrollTo({ top: 0 });
      app.scrollTo({ top: 0 });
    }, 60);
  }
  history.pushState = function (state, title, url) {
    toTop();
    const target = new URL(url, app.location.href);
    const secondHalf = queryPushed === app.location.href && target.pathname !== app.location.pathname &&
      sameQuery(url, app.location.search);
    queryPushed = !secondHalf && target.pathname === app.location.pathname ? target.href : null;
    return secondHalf ? replace(state, title, url) : push(state, title, url);
  };
  history.replaceState = function (state, title, url) {
    if (url !== undefined && url !== null && isStep(url)) {
      toTop();
      queryPushed = null;
      return push(state, title, url);
    }
    if (url && params(url).get("page") !== new URLSearchParams(app.location.search).get("page")) toTop();
    return replace(state, title, url);
  };

  // A click on an exemplar picture follows the image-page link under it: the picture's own block (a
  // card, or a unit page's column) holds one link per picture of a card's strip (picked by where
  // the click fell across the strip) or the one under a unit page's picture.
  const IMAGE_LINKS = 'a[href*="image?"]';
  const style = app.document.createElement("style");
  style.textContent = `[data-testid="stVerticalBlock"]:has(${IMAGE_LINKS}) [data-testid="stImage"] img { cursor: pointer; }`;
  app.document.head.appendChild(style);
  app.document.addEventListener("click", (event) => {
    const picture = event.target.closest && event.target.closest('[data-testid="stImage"] img');
    if (!picture) return;
    const block = picture.closest('[data-testid="stVerticalBlock"]');
    const links = block ? [...block.querySelectorAll(IMAGE_LINKS)] : [];
    if (!links.length) return;
    const box = picture.getBoundingClientRect();
    const index = Math.min(links.length - 1, Math.floor(((event.clientX - box.left) / box.width) * links.length));
    event.preventDefault();
    links[Math.max(0, index)].click();
  });

  // An image page's link written in markdown (a card's "#1 · #2 · #3") opens inside the app, as a
  // page link does, instead of in a new tab: the address is pushed (one history entry) and Streamlit
  // follows it as it follows Back and Forward. A click with a modifier key keeps the browser's way.
  app.document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('[data-testid="stMarkdownContainer"] a[href^="image?"]');
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    history.pushState(null, "", link.href);
    app.dispatchEvent(new PopStateEvent("popstate"));
  });

  // Keyboard: "/" jumps to the search box; j / k open the next / previous unit on a unit page.
  app.document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const buttons = [...app.document.querySelectorAll("button")];
    const byText = (words) => buttons.find((button) => button.textContent.includes(words));
    if (event.key === "/") {
      const box = app.document.querySelector('input[aria-label="Search descriptions"]');
      if (box) { event.preventDefault(); box.focus(); }
    } else if (event.key === "j" || event.key === "k") {
      const button = byText(event.key === "j" ? "next:" : "← previous:");
      if (button) { event.preventDefault(); button.click(); }
    }
  });
})();
