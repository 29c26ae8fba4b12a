//! Where nodes go: best fit, within every PM's declared capacity, with
//! affinity groups. Pure: the caller holds the broker's lock, so two
//! requests never place against the same free capacity.

use iris_schemas::broker::{Capacity, GroupPolicy};
use std::collections::BTreeSet;

/// A PM as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmView {
    pub name: String,
    pub capacity: Capacity,
    pub used: Capacity,
    pub draining: bool,
}

/// What to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub size: Capacity,
    pub count: u32,
    /// Only this PM.
    pub pm: Option<String>,
    pub policy: Option<GroupPolicy>,
    /// The PMs the group's earlier nodes are on.
    pub group_pms: BTreeSet<String>,
}

/// Why nothing was placed (all or nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no PM named {0:?}")]
    UnknownPm(String),
    #[error(
        "only {placed} of {count} node(s) fit: no PM has room for another {size} within its \
         declared capacity{why}; ask for fewer or smaller nodes, or register more PMs"
    )]
    NoRoom {
        placed: u32,
        count: u32,
        size: String,
        why: String,
    },
}

fn fits(free: Capacity, size: Capacity) -> bool {
    size.vcpus <= free.vcpus && size.memory_mib <= free.memory_mib && size.disk_gib <= free.disk_gib
}

fn free(pm: &PmView) -> Capacity {
    Capacity {
        vcpus: pm.capacity.vcpus.saturating_sub(pm.used.vcpus),
        memory_mib: pm.capacity.memory_mib.saturating_sub(pm.used.memory_mib),
        disk_gib: pm.capacity.disk_gib.saturating_sub(pm.used.disk_gib),
    }
}

pub fn add(a: Capacity, b: Capacity) -> Capacity {
    Capacity {
        vcpus: a.vcpus.saturating_add(b.vcpus),
        memory_mib: a.memory_mib.saturating_add(b.memory_mib),
        disk_gib: a.disk_gib.saturating_add(b.disk_gib),
    }
}

/// What is left of a PM after taking `size`, as the fraction of its
/// capacity that stays free (the smaller the better fit).
fn leftover(pm: &PmView, size: Capacity) -> f64 {
    let f = free(pm);
    let part = |free: u64, take: u64, cap: u64| {
        if cap == 0 {
            0.0
        } else {
            (free - take) as f64 / cap as f64
        }
    };
    part(f.vcpus.into(), size.vcpus.into(), pm.capacity.vcpus.into())
        + part(f.memory_mib, size.memory_mib, pm.capacity.memory_mib)
        + part(f.disk_gib, size.disk_gib, pm.capacity.disk_gib)
}

/// One PM name per node, or why not: best fit (the PM left with the least
/// free after each node), ties by name.
pub fn place(pms: &[PmView], ask: &Ask) -> Result<Vec<String>, PlacementError> {
    if let Some(p) = &ask.pm {
        if !pms.iter().any(|pm| &pm.name == p) {
            return Err(PlacementError::UnknownPm(p.clone()));
        }
    }
    let mut pms: Vec<PmView> = pms
        .iter()
        .filter(|pm| !pm.draining)
        .filter(|pm| ask.pm.as_ref().is_none_or(|p| &pm.name == p))
        .cloned()
        .collect();
    let no_room = |placed: u32, why: &str| PlacementError::NoRoom {
        placed,
        count: ask.count,
        size: format!(
            "{} vCPU / {} MiB / {} GiB",
            ask.size.vcpus, ask.size.memory_mib, ask.size.disk_gib
        ),
        why: why.to_owned(),
    };
    if ask.policy == Some(GroupPolicy::Affinity) {
        // All on one PM: the group's, or the best fit for the whole lot.
        let total = Capacity {
            vcpus: ask.size.vcpus.saturating_mul(ask.count),
            memory_mib: ask.size.memory_mib.saturating_mul(ask.count.into()),
            disk_gib: ask.size.disk_gib.saturating_mul(ask.count.into()),
        };
        let best = pms
            .iter()
            .filter(|pm| ask.group_pms.is_empty() || ask.group_pms.contains(&pm.name))
            .filter(|pm| fits(free(pm), total))
            .min_by(|a, b| leftover(a, total).total_cmp(&leftover(b, total)));
        return match best {
            Some(pm) => Ok(vec![pm.name.clone(); ask.count as usize]),
            None => Err(no_room(0, " on one PM, as the group's affinity asks")),
        };
    }
    let mut taken: BTreeSet<String> = ask.group_pms.clone();
    let mut out = Vec::with_capacity(ask.count as usize);
    for placed in 0..ask.count {
        let anti = ask.policy == Some(GroupPolicy::AntiAffinity);
        let best = pms
            .iter_mut()
            .filter(|pm| !anti || !taken.contains(&pm.name))
            .filter(|pm| fits(free(pm), ask.size))
            .min_by(|a, b| leftover(a, ask.size).total_cmp(&leftover(b, ask.size)));
        let Some(pm) = best else {
            let why = if anti {
                " on a PM the group does not use yet, as its anti-affinity asks"
            } else {
                ""
            };
            return Err(no_room(placed, why));
        };
        pm.used = add(pm.used, ask.size);
        taken.insert(pm.name.clone());
        out.push(pm.name.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cap(vcpus: u32, memory_mib: u64, disk_gib: u64) -> Capacity {
        Capacity {
            vcpus,
            memory_mib,
            disk_gib,
        }
    }

    fn pm(name: &str, capacity: Capacity, used: Capacity) -> PmView {
        PmView {
            name: name.into(),
            capacity,
            used,
            draining: false,
        }
    }

    fn ask(count: u32) -> Ask {
        Ask {
            size: cap(2, 2048, 10),
            count,
            pm: None,
            policy: None,
            group_pms: BTreeSet::new(),
        }
    }

    #[test]
    fn best_fit_fills_the_fuller_pm_first() {
        let pms = [
            pm("a", cap(16, 16384, 100), cap(0, 0, 0)),
            pm("b", cap(16, 16384, 100), cap(12, 12288, 60)),
        ];
        assert_eq!(place(&pms, &ask(3)).unwrap(), ["b", "b", "a"]);
    }

    #[test]
    fn never_more_than_the_capacity_and_all_or_nothing() {
        let pms = [pm("a", cap(4, 8192, 100), cap(0, 0, 0))];
        assert_eq!(place(&pms, &ask(2)).unwrap(), ["a", "a"]);
        let err = place(&pms, &ask(3)).unwrap_err();
        assert!(
            matches!(
                err,
                PlacementError::NoRoom {
                    placed: 2,
                    count: 3,
                    ..
                }
            ),
            "{err}"
        );
        // Memory, not vCPUs, is what runs out here.
        let pms = [pm("a", cap(64, 3000, 100), cap(0, 0, 0))];
        assert!(place(&pms, &ask(2)).is_err());
    }

    #[test]
    fn draining_pms_and_other_pms_are_left_alone() {
        let mut a = pm("a", cap(16, 16384, 100), cap(0, 0, 0));
        a.draining = true;
        let b = pm("b", cap(16, 16384, 100), cap(0, 0, 0));
        assert_eq!(place(&[a.clone(), b.clone()], &ask(1)).unwrap(), ["b"]);
        let mut only_b = ask(1);
        only_b.pm = Some("b".into());
        let c = pm("c", cap(16, 16384, 100), cap(14, 0, 0));
        assert_eq!(place(&[b.clone(), c], &only_b).unwrap(), ["b"]);
        only_b.pm = Some("zz".into());
        assert_eq!(
            place(&[b], &only_b).unwrap_err(),
            PlacementError::UnknownPm("zz".into())
        );
    }

    #[test]
    fn anti_affinity_spreads_and_affinity_packs() {
        let pms = [
            pm("a", cap(16, 16384, 100), cap(0, 0, 0)),
            pm("b", cap(16, 16384, 100), cap(0, 0, 0)),
            pm("c", cap(16, 16384, 100), cap(0, 0, 0)),
        ];
        let mut spread = ask(3);
        spread.policy = Some(GroupPolicy::AntiAffinity);
        let mut got = place(&pms, &spread).unwrap();
        got.sort();
        assert_eq!(got, ["a", "b", "c"]);
        spread.group_pms = ["a".to_string()].into();
        assert!(place(&pms, &spread).is_err());
        spread.count = 2;
        let mut got = place(&pms, &spread).unwrap();
        got.sort();
        assert_eq!(got, ["b", "c"]);

        let mut pack = ask(4);
        pack.policy = Some(GroupPolicy::Affinity);
        pack.group_pms = ["c".to_string()].into();
        assert_eq!(place(&pms, &pack).unwrap(), ["c"; 4]);
        pack.count = 9;
        assert!(place(&pms, &pack).is_err());
    }
}
