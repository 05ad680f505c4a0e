//! A few blob transfers at once on scoped threads; the first error stops
//! the others from starting new work and is returned.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `work` on every item with at most `workers` threads; results keep
/// the items' order.
pub(crate) fn for_each_parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        return;
                    };
                    match work(item) {
                        Ok(result) => results.lock().unwrap()[index] = Some(result),
                        Err(error) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(error);
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = first_error.into_inner().unwrap() {
        return Err(error);
    }
    Ok(results.into_inner().unwrap().into_iter().map(|result| result.expect("every item ran")).collect())
}

#[cfg(test)]
mod tests {
    use super::for_each_parallel;

    #[test]
    fn keeps_order_and_returns_the_first_error() {
        let items: Vec<u32> = (0..20).collect();
        let doubled = for_each_parallel(&items, 3, |n| Ok::<_, ()>(n * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let failed = for_each_parallel(&items, 3, |n| if *n == 7 { Err(*n) } else { Ok(*n) });
        assert_eq!(failed, Err(7));
    }
}
