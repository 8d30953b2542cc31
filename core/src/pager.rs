//! Following every page of `GET /app/installations`.

use std::collections::HashSet;

use crate::error::Error;
use crate::models::{Installation, InstallationsPage};

/// The page size asked for when listing every installation (the documented example is 10; the
/// maximum is not documented, and 100 is the common NestJS cap).
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// A safety stop for a server that never says it is done.
const MAX_PAGES: u32 = 10_000;

/// Collects every installation, page by page: ask [`next_page`](Self::next_page) which page to
/// read, read it, hand the parsed page to [`add`](Self::add), until `next_page` returns `None`.
/// [`ListInstallations`](crate::ListInstallations) drives it.
///
/// Pages are requested from 0 up. Installations seen on an earlier page are not repeated (a
/// list that shifts while it is read, or a server whose pages are 1-based, cannot duplicate).
#[derive(Debug, Default)]
pub struct InstallationPager {
    limit: u32,
    page: u32,
    done: bool,
    seen: HashSet<String>,
    items: Vec<Installation>,
    stale_pages: u32,
}

impl InstallationPager {
    /// A pager asking for `limit` installations a page (at least 1).
    pub fn new(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            page: 0,
            done: false,
            seen: HashSet::new(),
            items: Vec::new(),
            stale_pages: 0,
        }
    }

    /// The `(limit, page)` to read next, or `None` when every page has been read.
    pub fn next_page(&self) -> Result<Option<(u32, u32)>, Error> {
        if self.done {
            return Ok(None);
        }
        if self.page >= MAX_PAGES {
            return Err(Error::MalformedBody {
                status: 200,
                problem: format!("the registry kept returning full pages after {MAX_PAGES} pages"),
                excerpt: String::new(),
            });
        }
        Ok(Some((self.limit, self.page)))
    }

    /// Adds the page answering the last request.
    pub fn add(&mut self, page: InstallationsPage) {
        let new_items = page.installations.iter().filter(|i| !self.seen.contains(&i.id)).count();
        let has_more = page.has_more(self.limit, self.items.len() + new_items);
        for installation in page.installations {
            if self.seen.insert(installation.id.clone()) {
                self.items.push(installation);
            }
        }
        // A full page of nothing new can happen once (a 1-based server answering page 0 and
        // page 1 alike); twice in a row means the server is repeating itself.
        self.stale_pages = if new_items == 0 { self.stale_pages + 1 } else { 0 };
        self.page += 1;
        self.done = !has_more || self.stale_pages >= 2;
    }

    /// How many pages have been read.
    pub fn pages(&self) -> u32 {
        self.page
    }

    /// Every installation read, in the registry's order.
    pub fn into_items(self) -> Vec<Installation> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Pagination;

    fn page(ids: std::ops::Range<u32>, current: i64, next: Option<i64>, total: u64) -> InstallationsPage {
        let installations = ids
            .map(|i| serde_json::from_value(serde_json::json!({ "id": i.to_string() })).unwrap())
            .collect();
        InstallationsPage {
            pagination: Some(Pagination {
                total: Some(total),
                current_page: Some(current),
                next_page: Some(next),
                ..Pagination::default()
            }),
            installations,
        }
    }

    #[test]
    fn zero_based_server() {
        let mut p = InstallationPager::new(10);
        p.add(page(0..10, 0, Some(1), 25));
        p.add(page(10..20, 1, Some(2), 25));
        p.add(page(20..25, 2, None, 25));
        assert!(p.done);
        assert_eq!(p.into_items().len(), 25);
    }

    #[test]
    fn one_based_server_that_answers_page_zero_as_page_one() {
        let mut p = InstallationPager::new(10);
        p.add(page(0..10, 1, Some(2), 25));
        p.add(page(0..10, 1, Some(2), 25));
        assert!(!p.done, "one repeated page is tolerated");
        p.add(page(10..20, 2, Some(3), 25));
        p.add(page(20..25, 3, None, 25));
        assert!(p.done);
        assert_eq!(p.pages(), 4);
        assert_eq!(p.into_items().len(), 25);
    }

    #[test]
    fn a_server_capping_the_page_size_below_the_limit_is_read_to_the_end() {
        // Asked for 10 a page, the registry serves at most 5: short pages, but more to come.
        let mut p = InstallationPager::new(10);
        p.add(page(0..5, 0, Some(1), 12));
        assert!(!p.done, "total says 7 more");
        p.add(page(5..10, 1, Some(2), 12));
        p.add(page(10..12, 2, None, 12));
        assert!(p.done);
        assert_eq!(p.into_items().len(), 12);
        // Without a total, nextPage decides.
        let mut p = InstallationPager::new(10);
        let mut first = page(0..5, 0, Some(1), 0);
        first.pagination.as_mut().unwrap().total = None;
        p.add(first);
        assert!(!p.done);
        // Without any pagination block, a short page is the last one.
        let mut p = InstallationPager::new(10);
        p.add(InstallationsPage {
            pagination: None,
            installations: page(0..5, 0, None, 0).installations,
        });
        assert!(p.done);
    }

    #[test]
    fn a_server_repeating_itself_is_stopped() {
        let mut p = InstallationPager::new(10);
        p.add(InstallationsPage {
            pagination: None,
            installations: page(0..10, 0, None, 0).installations,
        });
        for _ in 0..2 {
            p.add(InstallationsPage {
                pagination: None,
                installations: page(0..10, 0, None, 0).installations,
            });
        }
        assert!(p.done);
        assert_eq!(p.into_items().len(), 10);
    }
}
